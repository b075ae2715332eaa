"""Render annotators' and models' text as Markdown, safely, for the pages.

Two layers, so that a mistake in one is caught by the other:
- markdown-it-py with raw HTML turned off: `<script>` in a message comes out as text, and its
  link validation refuses `javascript:`, `vbscript:`, `file:` and `data:` destinations (after
  decoding HTML entities, so `&#106;avascript:` is refused too);
- nh3 (ammonia) then keeps only the tags Markdown produces, only http, https and mailto links
  (relative ones too are dropped: a message must not link into the platform), and no attribute
  but a link's href and title. Links open in a new tab, so following one never leaves a task.
"""

from functools import lru_cache

import nh3
from markdown_it import MarkdownIt

ALLOWED_TAGS = {
    "p", "br", "hr", "em", "strong", "del", "code", "pre", "blockquote",
    "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6", "a",
    "table", "thead", "tbody", "tr", "th", "td",
}
LINK_SCHEMES = {"http", "https", "mailto"}


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    # Images are off: a reply must not make the annotator's browser fetch from anywhere; its
    # `![alt](url)` shows as text with a link instead.
    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
        ["table", "strikethrough"]
    ).disable("image")


@lru_cache(maxsize=1)
def _cleaner() -> nh3.Cleaner:
    return nh3.Cleaner(
        tags=ALLOWED_TAGS,
        clean_content_tags={"script", "style"},
        attributes={"a": {"href", "title"}, "ol": {"start"}},
        url_schemes=LINK_SCHEMES,
        url_relative="deny",
        link_rel="noopener noreferrer nofollow",
        set_tag_attribute_values={"a": {"target": "_blank"}},
    )


def render_markdown(text: str) -> str:
    """Return safe HTML for a message's Markdown text."""
    if not text:
        return ""
    return _cleaner().clean(_parser().render(text))
