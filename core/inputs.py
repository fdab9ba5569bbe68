"""The one input boundary: what every string, number and timestamp from outside must be.

Every way in uses these checks: the JSON API's parser and its field types, the socket
frames, and the middleware that reads forms and query strings (``InputBoundaryMiddleware``).
The rules (docs/api.md, "Input rules"):

- **Text** holds no control characters (Unicode category Cc: NUL, the C0 and C1 ranges,
  DEL) and no lone surrogates. Multi-line fields (a message, a reason) may hold tab, line
  feed and carriage return. PostgreSQL cannot store NUL at all.
- **JSON** is plain JSON: no NaN or Infinity, no number that overflows to infinity, no lone
  surrogate or NUL in any string or key, at most ``MAX_JSON_DEPTH`` levels deep.
- **Timestamps** carry a timezone and lie in a window: not older than what the console keeps
  for that kind of record, not more than ``FUTURE_SKEW`` ahead of the server's clock.
- **External ids** use ``EXTERNAL_ID_CHARS``: letters, digits and ``. _ : @ -`` (no ``/``:
  an id is a path segment of the ingest API).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.dateparse import parse_date, parse_datetime

from core.errors import ErrorCode, InterfaceError

# Cc but tab, line feed and carriage return; and the surrogate range.
_MULTILINE_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
# Every Cc and the surrogate range.
_LINE_BAD = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
MAX_JSON_DEPTH = 32
FUTURE_SKEW = timedelta(minutes=5)
EXTERNAL_ID_CHARS = "A-Za-z0-9._:@-"
EXTERNAL_ID_PATTERN = rf"^[{EXTERNAL_ID_CHARS}]+$"
EXTERNAL_ID_MAX = 200
EXTERNAL_ID = re.compile(rf"[{EXTERNAL_ID_CHARS}]{{1,{EXTERNAL_ID_MAX}}}")


class InputProblem(ValueError):
    """Input that is refused at the boundary; the message says what and where."""


def _describe(char: str) -> str:
    if "\ud800" <= char <= "\udfff":
        return f"a lone surrogate (U+{ord(char):04X})"
    if char == "\x00":
        return "a NUL character (U+0000)"
    return f"a control character (U+{ord(char):04X})"


def text_problem(value: str, *, multiline: bool = False) -> str | None:
    """Why this text is refused, or None."""
    found = (_MULTILINE_BAD if multiline else _LINE_BAD).search(value)
    if found is None:
        return None
    return f"contains {_describe(found.group())} at position {found.start()}"


def printable(value: str) -> str:
    """The text with every character ``text_problem`` refuses in multi-line text replaced by
    U+FFFD: for records of what was refused (the audit trail), which must still be stored."""
    return _MULTILINE_BAD.sub("\ufffd", value)


def check_text(value: str, *, multiline: bool = False, field: str = "text") -> str:
    problem = text_problem(value, multiline=multiline)
    if problem:
        raise InputProblem(f"{field} {problem}")
    return value


def json_problem(value: Any, *, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """Why this decoded JSON value is refused (a non-finite number, a bad string or key,
    nesting past ``max_depth``), or None. Iterative: no depth can overflow the stack."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item, multiline=True)
            if problem:
                return f"{where or 'the value'} {problem}"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"{where or 'the value'} is not a finite number"
        elif isinstance(item, dict | list):
            if depth > max_depth:
                return f"{where or 'the value'} is nested deeper than {max_depth} levels"
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        return f"{where or 'the value'} has a key that is not a string"
                    problem = text_problem(key, multiline=False)
                    if problem:
                        return f"a key of {where or 'the object'} {problem}"
                    stack.append((child, depth + 1, f"{where}.{key}" if where else key))
            else:
                stack.extend((child, depth + 1, f"{where}[{n}]") for n, child in enumerate(item))
        elif not (item is None or isinstance(item, bool | int)):
            return f"{where or 'the value'} is not a JSON value"
    return None


def _refuse_constant(name: str) -> Any:
    raise InputProblem(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise InputProblem(f"{text[:40]} overflows to infinity")
    return number


def loads(data: str | bytes, *, text: bool = True) -> Any:
    """Plain JSON, checked as ``json_problem`` says; InputProblem with the reason.

    ``text=False`` (the JSON API) refuses only what is not JSON here (``NaN``,
    ``Infinity``, nesting too deep to parse) and leaves the rest to the field types of the
    shape that reads the body, so a bad value is answered with its field's code: numbers
    are finite (``allow_inf_nan=False``), text is ``LINE`` or ``PARAGRAPH``, free-form data
    is ``JsonObject`` (core/schemas.py)."""
    try:
        if text:
            value = json.loads(data, parse_constant=_refuse_constant, parse_float=_finite_float)
        else:
            value = json.loads(data, parse_constant=_refuse_constant)
    except InputProblem:
        raise
    except RecursionError:
        raise InputProblem(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputProblem(f"not valid JSON: {exc}") from None
    problem = json_problem(value) if text else None
    if problem:
        raise InputProblem(problem)
    return value


def parse_time(text: str) -> datetime | None:
    """A time given as text: ISO 8601 (``2026-12-01T14:00:00Z``, ``+02:00``), a form's
    ``2026-12-01 14:00`` or ``2026-12-01T14:00``, or a date (midnight); UTC where no zone is
    given. None for an empty text; ``InputProblem`` saying what is expected otherwise."""
    value = text.strip()
    if not value:
        return None
    found = None
    try:  # a well-formed but impossible time (month 13, hour 25) raises ValueError
        if not text_problem(value) and len(value) <= 40:
            found = parse_datetime(value.replace(" ", "T", 1))
            if found is None and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                day = parse_date(value)
                found = None if day is None else datetime(day.year, day.month, day.day, tzinfo=UTC)
    except ValueError:
        found = None
    if found is None:
        shown = printable(value[:40])
        raise InputProblem(f"must be a time such as 2026-12-01T14:00:00Z (UTC where no zone is given), not {shown!r}.")
    return found if found.tzinfo is not None else found.replace(tzinfo=UTC)


def unknown_keys(frame: dict[str, Any], allowed: Iterable[str]) -> list[str]:
    return sorted(set(frame) - set(allowed))


def as_utc(value: datetime) -> datetime | None:
    """The instant in UTC, or None where it lies outside what a datetime can hold."""
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def time_problem(value: datetime, *, max_age: timedelta, now: datetime | None = None) -> tuple[str, str] | None:
    """(kind, reason) when the timestamp lies outside [now - max_age, now + FUTURE_SKEW]:
    kind is ``"time_too_old"`` or ``"time_in_future"``."""
    if value.tzinfo is None or value.utcoffset() is None:
        return "time_too_old", "has no timezone"
    now = now or datetime.now(UTC)
    instant = as_utc(value)
    if instant is None or instant < now - max_age:
        days = max_age.total_seconds() / 86400
        return "time_too_old", f"is older than {days:g} days, the window this record is kept for"
    if instant > now + FUTURE_SKEW:
        minutes = int(FUTURE_SKEW.total_seconds() // 60)
        return "time_in_future", f"is more than {minutes} minutes ahead of the server's clock"
    return None


# --- forms and query strings --------------------------------------------------------

# The code a bad form field or query parameter gets, by the URL namespace that serves it.
NAMESPACE_CODES: dict[str, ErrorCode] = {
    "dashboard": ErrorCode.DASHBOARD_INVALID_QUERY,
    "control": ErrorCode.CONTROL_INVALID_REQUEST,
    "events": ErrorCode.EVENT_INVALID_QUERY,
    "audit": ErrorCode.AUDIT_INVALID_QUERY,
    "api": ErrorCode.INGEST_INVALID,
}
# The API's routers by path, where their code is not the ingest's.
API_CODES: dict[str, ErrorCode] = {
    "/api/v1/agents/": ErrorCode.CONTROL_INVALID_REQUEST,
    "/api/v1/events": ErrorCode.EVENT_INVALID_QUERY,
    "/api/v1/approvals": ErrorCode.APPROVAL_INVALID,
}
# Fields whose mistakes have a code of their own there (the service gives the same).
FIELD_CODES: dict[tuple[str, str], ErrorCode] = {
    **{("control", name): ErrorCode.CONTROL_INVALID_SELECTION for name in ("selector", "agent")},
    **{("control", name): ErrorCode.CONTROL_INVALID_PAUSE for name in ("minutes", "until", "mode")},
    **{("control", name): ErrorCode.CONTROL_INVALID_QUOTA for name in ("quota_type", "new_limit", "period")},
    ("control", "action"): ErrorCode.CONTROL_INVALID_ACTION,
}


def _pairs(request: HttpRequest) -> Iterable[tuple[str, str, str, bool]]:
    """(where, key, value, multiline) of every query parameter and form field."""
    for key, values in request.GET.lists():
        for value in values:
            yield "query parameter", key, value, False
    if request.method == "POST" and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        for key, values in request.POST.lists():
            for value in values:
                yield "form field", key, value, True


def form_problem(request: HttpRequest) -> tuple[str, str] | None:
    """(field, problem) for the first form field or query parameter refused, or None."""
    for where, key, value, multiline in _pairs(request):
        problem = text_problem(key)
        if problem:
            return "a name", f"A {where} name {problem}."
        problem = text_problem(value, multiline=multiline)
        if problem:
            shown = key[:60]
            return shown, f"The {where} “{shown}” {problem}."
    return None


def _code_for(request: HttpRequest, field: str) -> ErrorCode:
    match = request.resolver_match
    namespaces: list[str] = list(match.namespaces) if match else []
    if namespaces == ["api"]:
        for prefix, code in API_CODES.items():
            if request.path.startswith(prefix):
                return code
    for name in namespaces:
        if (name, field) in FIELD_CODES:
            return FIELD_CODES[name, field]
        if name in NAMESPACE_CODES:
            return NAMESPACE_CODES[name]
    return ErrorCode.INVALID_INPUT


class InputBoundaryMiddleware:
    """Refuses a request whose query string or form carries text the console does not
    accept, before any view reads it: 400 with the code of the part of the console asked
    (the API's error body under /api/, a page elsewhere). Nothing is read or written."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view: Any, args: Any, kwargs: Any) -> HttpResponse | None:
        found = form_problem(request)
        if found is None:
            return None
        field, problem = found
        error = InterfaceError(_code_for(request, field), f"{problem} Nothing was changed.", details={"field": field})
        if request.path.startswith("/api/"):
            return JsonResponse(error.as_dict(), status=400)
        return render(request, "400.html", {"error": error}, status=400)
