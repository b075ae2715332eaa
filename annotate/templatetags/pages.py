"""Template filters for the pages: safe Markdown, readable text, and small words for numbers."""

from django import template
from django.utils.safestring import mark_safe

from annotate.markdown import render_markdown

register = template.Library()

# What byte-level tokenizers write when a sampled reply ends inside a multi-byte character: the
# decoder's U+FFFD. It means nothing to a reader, so pages leave it out (the stored text keeps it).
REPLACEMENT_CHARACTER = "\ufffd"


@register.filter
def readable(text: str) -> str:
    """Return the text without replacement characters, for showing it as plain text."""
    return (text or "").replace(REPLACEMENT_CHARACTER, "")


@register.filter
def markdown(text: str):
    """Render a message's Markdown as sanitised HTML (see annotate.markdown)."""
    return mark_safe(render_markdown(readable(text)))  # noqa: S308 - sanitised by nh3 just above


@register.filter
def ordinal(number) -> str:
    number = int(number)
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


@register.filter
def get_item(mapping, key):
    return mapping.get(key) if mapping else None


@register.filter
def counted(number, noun: str) -> str:
    """Return "1 message", "2 messages": the count and the plural noun (as the importers name
    their counts, underscores and all), singular for one."""
    words = str(noun).replace("_", " ").split(" ")
    if number == 1 and words[0].endswith("s"):
        words[0] = words[0][:-1]
    return f"{number} {' '.join(words)}"
