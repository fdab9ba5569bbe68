"""Display helpers for the Django templates (``core.display``), and ``{% fragment %}``,
which renders a Jinja2 fragment (``core.jinja``) in place."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString

from core import display, jinja, money

register = template.Library()


register.filter("ago", display.ago)
register.filter("num", display.num)
register.filter("usd", money.usd)
register.filter("normalize_usd", money.rate)
# {% link "name" arg %} and {% asset "path" %}: {% url %} and {% static %}, remembered.
register.simple_tag(display.url, name="link")
register.simple_tag(display.asset, name="asset")


@register.simple_tag
def fragment(name: str, **context: object) -> SafeString:
    """A Jinja2 fragment (``core.jinja``) rendered with exactly these names."""
    return jinja.render(name, context)


@register.simple_tag(takes_context=True)
def query(context: dict[str, object], **changes: object) -> str:
    """The current query string with some parameters changed (None removes one)."""
    request = context["request"]
    return display.with_params(request.GET, **changes)  # type: ignore[attr-defined]


@register.filter
def percent(value: float | None, places: int = 1) -> str:
    """0..1 as a percentage."""
    if value is None:
        return "—"
    return f"{value * 100:.{places}f} %"


@register.filter
def get(mapping: dict[str, object] | None, key: str) -> object:
    return (mapping or {}).get(key)
