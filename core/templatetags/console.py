"""Display helpers: relative times with the UTC time on hover, aligned numbers."""

from __future__ import annotations

from datetime import UTC, datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()


def _span(seconds: float) -> str:
    seconds = int(abs(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


@register.filter
def ago(value: datetime | None) -> SafeString | str:
    """``4 s ago`` in a <time> element whose title is the absolute UTC time."""
    if value is None:
        return "never"
    delta = (timezone.now() - value).total_seconds()
    text = f"{_span(delta)} ago" if delta >= 0 else f"in {_span(delta)}"
    utc = value.astimezone(UTC)
    return format_html(
        '<time datetime="{}" title="{} UTC">{}</time>', utc.isoformat(), utc.strftime("%Y-%m-%d %H:%M:%S"), text
    )


@register.filter
def num(value: float | int | None, places: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{places}f}"


@register.simple_tag(takes_context=True)
def query(context: dict[str, object], **changes: object) -> str:
    """The current query string with some parameters changed (None removes one)."""
    request = context["request"]
    params = request.GET.copy()  # type: ignore[attr-defined]
    for name, value in changes.items():
        if value is None or value == "":
            params.pop(name, None)
        else:
            params[name] = str(value)
    encoded = params.urlencode()
    return f"?{encoded}" if encoded else "?"


@register.filter
def percent(value: float | None, places: int = 1) -> str:
    """0..1 as a percentage."""
    if value is None:
        return "—"
    return f"{value * 100:.{places}f} %"


@register.filter
def get(mapping: dict[str, object] | None, key: str) -> object:
    return (mapping or {}).get(key)
