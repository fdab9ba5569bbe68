"""The audit trail exported (docs/audit.md, "Export"): the filtered entries, oldest first,
as CSV or JSON Lines, each with its chain fields, streamed a chunk at a time so that a
million rows take the memory of one chunk. An export can be verified away from the
console with the key (``verify_export``, ``verify_audit --export``, or the stdlib-only
procedure in docs/audit.md)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from django.db.models import OuterRef, QuerySet, Subquery

from audit import selectors
from audit.chain import CONTENT, canonical, link_mac
from audit.models import AuditSeal
from audit.selectors import AuditFilter
from core.sql import fetch_all, plain, table

CHAIN = ("seq", "key_id", "prev_mac", "mac")
FIELDS = (*CONTENT, *CHAIN)
CHUNK = 5000
INTEGERS = frozenset({"id", "tenant_id", "actor_id", "seq"})
NULLABLE = frozenset({"actor_id", "ip", "batch_id", "seq", "key_id", "prev_mac", "mac"})
FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}


# Each row's values in the order of FIELDS; ``delta`` as JSON text, where it sits.
COLUMNS = (*CONTENT, "seal__seq", "seal__key_id", "prev_mac", "seal__mac")
AT, BATCH_ID, DELTA, SEQ, PREV = (
    FIELDS.index(name) for name in ("occurred_at", "batch_id", "delta", "seq", "prev_mac")
)
PLAIN = tuple(name for name in FIELDS if name != "delta")


def _entries_query(tenant_id: int | None, query: AuditFilter, after: int, chunk: int) -> QuerySet[Any, Any]:
    return selectors.entries(tenant_id, query).filter(pk__gt=after).order_by("pk").values_list(*CONTENT)[:chunk]


def _links_query(ids: list[int]) -> QuerySet[Any, Any]:
    previous = AuditSeal.objects.filter(tenant_id=OuterRef("tenant_id"), seq=OuterRef("seq") - 1).values("mac")
    found = AuditSeal.objects.filter(entry_id__in=ids).annotate(prev_mac=Subquery(previous[:1]))
    return found.values_list("entry_id", "seq", "key_id", "prev_mac", "mac")


def _page_portable(tenant_id: int | None, query: AuditFilter, after: int, chunk: int) -> list[list[Any]]:
    entries = list(_entries_query(tenant_id, query, after, chunk))
    links = {link[0]: link[1:] for link in _links_query([e[0] for e in entries])}
    out = []
    for entry in entries:
        values = [*entry, *links.get(entry[0], (None, None, None, None))]
        values[AT] = values[AT].astimezone(UTC).isoformat(timespec="microseconds")
        values[BATCH_ID] = None if values[BATCH_ID] is None else str(values[BATCH_ID])
        values[DELTA] = json.dumps(values[DELTA], ensure_ascii=False, separators=(",", ":"))
        values[PREV] = None if values[SEQ] is None else (values[PREV] or "")
        out.append(values)
    return out


# The page of entries (the ORM's statement, with the filters) first, then its links: joined
# the other way round, the planner walked every link up to the page's first.
PAGE_SQL = (
    "SELECT page.id, page.tenant_id, "  # noqa: S608 - constants and the ORM's own statement
    "to_char(page.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'), "
    "page.actor_id, page.actor_label, page.ip, page.user_agent, page.action, page.resource_type, page.resource_id, "
    "page.reason, page.delta, page.outcome, page.error_code, page.idempotency_key, page.request_id, "
    "page.batch_id::text, s.seq, s.key_id, CASE WHEN s.seq IS NULL THEN NULL ELSE coalesce(p.mac, '') END, s.mac "
    "FROM ({entries}) AS page "
    f"LEFT JOIN {table(AuditSeal)} s ON s.entry_id = page.id "
    f"LEFT JOIN {table(AuditSeal)} p ON p.tenant_id = s.tenant_id AND p.seq = s.seq - 1 "
    "ORDER BY page.id"
)


@plain(portable=_page_portable)
def page(tenant_id: int | None, query: AuditFilter, after: int, chunk: int) -> list[list[Any]]:
    """``chunk`` entries after id ``after`` with their chain fields, as ``FIELDS`` values in
    plain JSON terms (times and UUIDs as text, ``delta`` as JSON text), in one statement
    around the ORM's own for the entries: a million rows are read so."""
    entries, params = _entries_query(tenant_id, query, after, chunk).query.sql_with_params()
    return [list(row) for row in fetch_all(PAGE_SQL.format(entries=entries), params)]


def rows(tenant_id: int | None, query: AuditFilter, *, chunk: int = CHUNK) -> Iterator[list[Any]]:
    """The entries ``query`` names, oldest first, as ``FIELDS`` values in plain JSON terms;
    read ``chunk`` at a time by id (keyset), never all at once. An entry not yet sealed has
    no chain fields (None); the first of a chain has an empty ``prev_mac``."""
    last = 0
    while True:
        found = page(tenant_id, query, last, chunk)
        yield from found
        if len(found) < chunk:
            return
        last = found[-1][0]


def records(tenant_id: int | None, query: AuditFilter, *, chunk: int = CHUNK) -> Iterator[dict[str, Any]]:
    """``rows`` as dicts, ``delta`` decoded."""
    for values in rows(tenant_id, query, chunk=chunk):
        record = dict(zip(FIELDS, values, strict=True))
        record["delta"] = json.loads(record["delta"])
        yield record


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def jsonl(found: Iterable[list[Any]]) -> Iterator[str]:
    """A JSON object per line; ``delta``'s JSON text is set in as it is, not decoded and
    encoded again."""
    for values in found:
        head = _encode(dict(zip(PLAIN, values[:DELTA] + values[DELTA + 1 :], strict=True)))
        yield f'{head[:-1]},"delta":{values[DELTA]}}}\n'


def csv_lines(found: Iterable[list[Any]], *, batch: int = 500) -> Iterator[str]:
    """A header, then a line per entry (``delta`` as JSON text, None as empty), written in
    batches of lines."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(FIELDS)
    for n, values in enumerate(found, 1):
        writer.writerow(["" if v is None else v for v in values])
        if n % batch == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def read(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The rows of an export, CSV or JSON Lines (told apart by its first character)."""
    stream = iter(lines)
    first = next(stream, "")
    if first.lstrip().startswith("{"):
        for line in (first, *stream) if first else ():
            if line.strip():
                yield json.loads(line)
        return
    for values in csv.DictReader((first, *stream) if first else ()):
        row: dict[str, Any] = {}
        for name in FIELDS:
            text = values.get(name) or ""
            if name in NULLABLE and text == "":
                row[name] = None
            elif name in INTEGERS:
                row[name] = int(text)
            elif name == "delta":
                row[name] = json.loads(text)
            else:
                row[name] = text
        yield row


@dataclass
class ExportVerdict:
    verified: int = 0
    unsealed: int = 0
    gaps: int = 0  # places between two exported links of a tenant that the export leaves out
    problem: str = ""
    entry_id: int | None = None
    heads: dict[int, str] = field(default_factory=dict)  # tenant → its last link, "seq:mac"

    @property
    def ok(self) -> bool:
        return not self.problem


def verify_export(rows: Iterable[dict[str, Any]], keys: dict[str, str]) -> ExportVerdict:
    """Every sealed entry of an export against its MAC (its own ``prev_mac`` stands in for
    the link before it), and each link against the one before it where the export holds
    both. A filtered export verifies entry by entry; a whole one, as a chain."""
    verdict = ExportVerdict()
    last: dict[int, tuple[int, str]] = {}  # per tenant, the link of the row before
    span: dict[int, tuple[int, int, int, str]] = {}  # per tenant: lowest seq, highest, links, highest's MAC
    for row in rows:
        if row.get("seq") is None:
            verdict.unsealed += 1
            continue
        tenant, seq, mac = row["tenant_id"], row["seq"], row["mac"]
        key = keys.get(row["key_id"])
        if key is None:
            verdict.problem = f"entry {row['id']} was sealed with key {row['key_id']!r}, which is not given"
        elif link_mac(key, row["key_id"], seq, row["prev_mac"] or "", canonical(row)) != mac:
            verdict.problem = f"entry {row['id']} (link {seq}) does not match its MAC: it was edited"
        elif tenant in last and last[tenant][0] == seq - 1 and last[tenant][1] != (row["prev_mac"] or ""):
            verdict.problem = f"entry {row['id']} (link {seq}) does not follow link {seq - 1} of this export"
        if verdict.problem:
            verdict.entry_id = row["id"]
            return verdict
        last[tenant] = (seq, mac)
        low, high, links, head = span.get(tenant, (seq, seq, 0, mac))
        span[tenant] = (min(low, seq), max(high, seq), links + 1, mac if seq >= high else head)
        verdict.verified += 1
    # Rows are in id order; a link sealed late sits out of place, so places are counted, not walked.
    verdict.gaps = sum(high - low + 1 - links for low, high, links, _ in span.values())
    verdict.heads = {tenant: f"{high}:{head}" for tenant, (_, high, _, head) in span.items()}
    return verdict
