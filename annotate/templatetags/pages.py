"""Template filters for the pages: safe Markdown, and small words for numbers."""

from django import template
from django.utils.safestring import mark_safe

from annotate.markdown import render_markdown

register = template.Library()


@register.filter
def markdown(text: str):
    """Render a message's Markdown as sanitised HTML (see annotate.markdown)."""
    return mark_safe(render_markdown(text or ""))  # noqa: S308 - sanitised by nh3 just above


@register.filter
def ordinal(number) -> str:
    number = int(number)
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


@register.filter
def get_item(mapping, key):
    return mapping.get(key) if mapping else None
