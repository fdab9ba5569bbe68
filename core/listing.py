"""Long, newest-first lists read a page at a time: the event viewer and the audit trail
(docs/api.md, "Lists, pages and cursors").

- **The window** of a query (``read_window``): a time range, a page size, and where the
  page starts, by offset or by cursor. Each bad value has its own code, given by the list
  (``Codes``): an unparsable time, an end before its start, a page over ``max_limit``, an
  offset past the end, a cursor that is forged or belongs to another tenant or list.
- **Keyset pages** (``keyset_page``): newest first by (time, id); the next page starts
  after the last row shown, so a deep page costs what the first does. A cursor is that
  (time, id), signed with the console's key and bound to the tenant and the list.
- **Totals** (``bounded_total``) are counted up to a bound; past it, PostgreSQL's estimate
  of the plan's rows, marked as one ("about 1.2 million"), since counting a large table
  exactly costs a scan of it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from django.core import signing
from django.db import connections
from django.db.models import Model, Q, QuerySet

from core.errors import ErrorCode, InterfaceError
from core.inputs import InputProblem, parse_time, text_problem

M = TypeVar("M", bound=Model)


@dataclass(frozen=True)
class Codes:
    """A list's code for each way a window can be wrong."""

    invalid: ErrorCode  # an unknown key, a value that is not what the key takes
    bad_time: ErrorCode
    bad_range: ErrorCode
    too_many: ErrorCode
    past_end: ErrorCode
    bad_cursor: ErrorCode


@dataclass(frozen=True)
class Window:
    start: datetime | None
    end: datetime | None
    limit: int
    offset: int
    after: tuple[datetime, int] | None  # a cursor's (time, id): the page starts after it


def refuse(code: ErrorCode, field: str, problem: str) -> InterfaceError:
    return InterfaceError(code, problem, details={"field": field})


def check_filters(
    params: Mapping[str, Any], *, keys: frozenset[str], texts: Mapping[str, int], code: ErrorCode, what: str
) -> None:
    """Refuse a key not in ``keys``, and a value of ``texts`` (one text, or a list of them)
    with control characters or longer than its limit, naming the field."""
    unknown = sorted(set(params) - keys)
    if unknown:
        raise refuse(code, unknown[0], f"“{unknown[0][:40]}” is not a filter of {what}.")
    for name, longest in texts.items():
        value = params.get(name)
        for text in value if isinstance(value, list | tuple) else [value or ""]:
            problem = text_problem(str(text)) or (
                f"is longer than {longest} characters" if len(str(text)) > longest else None
            )
            if problem:
                raise refuse(code, name, f"“{name}” {problem}.")


def _number(params: Mapping[str, str], name: str, default: int, code: ErrorCode) -> int:
    raw = str(params.get(name, "") or "").strip()
    if not raw:
        return default
    if not raw.isdigit() or len(raw) > 9:
        raise refuse(code, name, f"“{name}” must be a whole number, 0 or more; got {raw[:20]!r}.")
    return int(raw)


def read_window(
    params: Mapping[str, Any], codes: Codes, *, kind: str, tenant_id: int, max_limit: int = 1000,
    default_limit: int = 50,
) -> Window:  # fmt: skip
    """The window of ``params`` (``start_time``, ``end_time``, ``limit``, ``offset``,
    ``cursor``), every value checked; an ``InterfaceError`` with the list's code and the
    field otherwise."""
    times: dict[str, datetime | None] = {}
    for name in ("start_time", "end_time"):
        raw = params.get(name)
        try:
            times[name] = raw if isinstance(raw, datetime) or raw is None else parse_time(str(raw))
        except InputProblem as exc:
            raise refuse(codes.bad_time, name, f"“{name}” {exc}") from None
    start, end = times["start_time"], times["end_time"]
    if start is not None and end is not None and end < start:
        raise refuse(codes.bad_range, "end_time", "“end_time” is before “start_time”: nothing can lie between them.")
    limit = _number(params, "limit", default_limit, codes.invalid)
    if limit < 1:
        raise refuse(codes.invalid, "limit", "“limit” must be at least 1.")
    if limit > max_limit:
        raise refuse(codes.too_many, "limit", f"“limit” may be at most {max_limit}; page with the cursor instead.")
    offset = _number(params, "offset", 0, codes.invalid)
    cursor = str(params.get("cursor", "") or "").strip()
    if cursor and offset:
        raise refuse(codes.invalid, "offset", "Give either “offset” or “cursor”, not both.")
    after = read_cursor(cursor, kind=kind, tenant_id=tenant_id, code=codes.bad_cursor) if cursor else None
    return Window(start, end, limit, offset, after)


def _salt(kind: str) -> str:
    return f"l10.listing.{kind}"


def make_cursor(*, kind: str, tenant_id: int, at: datetime, pk: int) -> str:
    """A signed token for "after (at, pk)" in ``kind``'s list of ``tenant_id``."""
    return signing.dumps({"t": tenant_id, "at": at.isoformat(), "id": pk}, salt=_salt(kind), compress=True)


def read_cursor(text: str, *, kind: str, tenant_id: int, code: ErrorCode) -> tuple[datetime, int]:
    problem = text_problem(text)
    try:
        if problem or len(text) > 500:
            raise signing.BadSignature
        data = signing.loads(text, salt=_salt(kind))
        if not isinstance(data, dict) or data.get("t") != tenant_id:
            raise signing.BadSignature
        at, pk = datetime.fromisoformat(data["at"]), data["id"]
        if not isinstance(pk, int) or at.tzinfo is None:
            raise signing.BadSignature
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise refuse(
            code, "cursor", "The cursor is not one this list gave you (altered, or from another tenant or list)."
        ) from None
    return at, pk


def keyset_page(
    rows: QuerySet[M], window: Window, *, kind: str, tenant_id: int, time_field: str
) -> tuple[list[M], str | None]:
    """One page of ``rows`` newest first by (``time_field``, id), from the window's cursor
    or offset; and the cursor of the next page (None on the last)."""
    ordered = rows.order_by(f"-{time_field}", "-pk")
    if window.after is not None:
        at, pk = window.after
        # The first bound says again what the second implies: an index on the time can
        # start there, where the OR alone reads and drops every row before the cursor
        # (docs/performance.md, "The event store").
        ordered = ordered.filter(
            Q(**{f"{time_field}__lte": at}), Q(**{f"{time_field}__lt": at}) | Q(**{time_field: at, "pk__lt": pk})
        )
        found = list(ordered[: window.limit + 1])
    else:
        found = list(ordered[window.offset : window.offset + window.limit + 1])
    page, more = found[: window.limit], len(found) > window.limit
    if not more or not page:
        return page, None
    last = page[-1]
    return page, make_cursor(kind=kind, tenant_id=tenant_id, at=getattr(last, time_field), pk=last.pk)


@dataclass(frozen=True)
class Total:
    value: int
    exact: bool

    def __str__(self) -> str:
        return f"{self.value:,}" if self.exact else f"about {self.value:,}"


def bounded_total(rows: QuerySet[Any], bound: int = 10_000) -> Total:
    """How many ``rows`` there are: exact up to ``bound``; past it, on PostgreSQL, the
    planner's estimate (never below the bound), marked as an estimate."""
    counted = rows.order_by()[: bound + 1].count()
    if counted <= bound:
        return Total(counted, True)
    connection = connections[rows.db]
    if connection.vendor != "postgresql":
        return Total(rows.order_by().count(), True)
    sql, params = rows.order_by().query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        row = cursor.fetchone()
    plan = row[0] if row else None
    if isinstance(plan, str):
        plan = json.loads(plan)
    estimate = int(plan[0]["Plan"]["Plan Rows"]) if isinstance(plan, Sequence) and plan else bound
    return Total(max(estimate, bound + 1), False)


def offset_past_end(window: Window, page: Sequence[Any], code: ErrorCode) -> InterfaceError | None:
    """An offset that finds no row: past the end of the list (offset 0 of an empty list is fine)."""
    if window.offset and not page:
        return refuse(code, "offset", f"“offset” {window.offset} is past the end of the list.")
    return None
