"""Display helpers shared by both template engines: relative times with the UTC time on
hover, aligned numbers."""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime

from django.contrib.staticfiles.storage import staticfiles_storage
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import QueryDict
from django.urls import get_script_prefix, reverse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe


def _span(seconds: float) -> str:
    seconds = int(abs(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def _ago_text(value: datetime, now: datetime) -> str:
    delta = (now - value).total_seconds()
    return f"{_span(delta)} ago" if delta >= 0 else f"in {_span(delta)}"


def ago(value: datetime | None) -> SafeString | str:
    """``4 s ago`` in a <time> element whose title is the absolute UTC time. ``data-ago``
    marks it for the browser, which tells it again from its ``datetime`` every second
    (static/js/console.js), so a cached or long-open page never shows a stale age."""
    if value is None:
        return "never"
    stamp = value.astimezone(UTC).isoformat()
    # Every part is made of digits, "-", ":", ".", "+", "T", spaces and the words above:
    # nothing to escape (format_html would escape each part again, once per row).
    text = _ago_text(value, timezone.now())
    return mark_safe(f'<time datetime="{stamp}" title="{stamp[:10]} {stamp[11:19]} UTC" data-ago>{text}</time>')  # noqa: S308


# What ``ago`` writes, and only that: other <time> elements have no title.
_AGO = re.compile(r'<time datetime="([0-9T:.+-]{19,32})" title="([0-9 :-]{19}) UTC" data-ago>[^<]{1,40}</time>')


def fresh_ago(html: str) -> SafeString:
    """HTML rendered earlier (and cached) with each ``ago`` told again from now, from the
    time in its ``datetime``: a cached page never says "4 s ago" of a minute-old time."""
    now = timezone.now()

    def again(match: re.Match[str]) -> str:
        value = datetime.fromisoformat(match[1])
        return f'<time datetime="{match[1]}" title="{match[2]} UTC" data-ago>{_ago_text(value, now)}</time>'

    return mark_safe(_AGO.sub(again, html))  # noqa: S308 - the parts put back are the matched ones and ago's text


def with_params(params: QueryDict, **changes: object) -> str:
    """The query string ``params`` with some parameters changed (None or "" removes one)."""
    changed = params.copy()
    for name, value in changes.items():
        if value is None or value == "":
            changed.pop(name, None)
        else:
            changed[name] = str(value)
    encoded = changed.urlencode()
    return f"?{encoded}" if encoded else "?"


def num(value: float | int | None, places: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{places}f}"


# URLs and asset paths do not change while a process runs; Django's reverse() costs about
# 80 µs and a static file's URL about 20 µs, and the layout asks for a dozen of them on
# every page (docs/performance.md, "Pages at a few milliseconds").


@functools.lru_cache(maxsize=4096)
def _reversed(prefix: str, name: str, args: tuple[str, ...]) -> str:
    return reverse(name, args=args)


def url(name: str, *args: object) -> str:
    """``reverse(name, args=args)``, remembered per script prefix."""
    return _reversed(get_script_prefix(), name, tuple(str(a) for a in args))


@functools.lru_cache(maxsize=256)
def asset(path: str) -> str:
    """A static file's URL (``{% static %}``), remembered."""
    return str(staticfiles_storage.url(path))


@receiver(setting_changed)
def _forget(*, setting: str, **kwargs: object) -> None:
    # Only tests change these while a process runs.
    if setting in {"ROOT_URLCONF", "STORAGES", "STATIC_URL", "STATIC_ROOT", "FORCE_SCRIPT_NAME"}:
        _reversed.cache_clear()
        asset.cache_clear()
