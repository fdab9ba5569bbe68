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
from typing import Any

from django.db.models import OuterRef, Subquery

from audit import selectors
from audit.chain import CONTENT, _plain, canonical, link_mac
from audit.models import AuditSeal
from audit.selectors import AuditFilter

CHAIN = ("seq", "key_id", "prev_mac", "mac")
FIELDS = (*CONTENT, *CHAIN)
CHUNK = 2000
INTEGERS = frozenset({"id", "tenant_id", "actor_id", "seq"})
NULLABLE = frozenset({"actor_id", "ip", "batch_id", "seq", "key_id", "prev_mac", "mac"})
FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}


def records(tenant_id: int | None, query: AuditFilter, *, chunk: int = CHUNK) -> Iterator[dict[str, Any]]:
    """The entries ``query`` names, oldest first, each as ``FIELDS`` in plain JSON values
    (times and UUIDs as text); read ``chunk`` at a time by id (keyset), never all at once.
    An entry not yet sealed has no chain fields (None); the first of a chain has an empty
    ``prev_mac``."""
    previous = AuditSeal.objects.filter(tenant_id=OuterRef("tenant_id"), seq=OuterRef("seal__seq") - 1).values("mac")
    rows = (
        selectors.entries(tenant_id, query)
        .annotate(prev_mac=Subquery(previous[:1]))
        .values(*CONTENT, "seal__seq", "seal__key_id", "seal__mac", "prev_mac")
    )
    last = 0
    while True:
        found = list(rows.filter(pk__gt=last).order_by("pk")[:chunk])
        for row in found:
            out = {name: _plain(row[name]) for name in CONTENT}
            seq = row["seal__seq"]
            out["seq"], out["key_id"], out["mac"] = seq, row["seal__key_id"], row["seal__mac"]
            out["prev_mac"] = None if seq is None else (row["prev_mac"] or "")
            yield out
        if len(found) < chunk:
            return
        last = found[-1]["id"]


def jsonl(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    for row in rows:
        yield json.dumps({name: row[name] for name in FIELDS}, ensure_ascii=False, separators=(",", ":")) + "\n"


def csv_lines(rows: Iterable[dict[str, Any]], *, batch: int = 500) -> Iterator[str]:
    """A header, then a line per entry (``delta`` as JSON text, None as empty), written in
    batches of lines."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(FIELDS)
    for n, row in enumerate(rows, 1):
        writer.writerow(
            [
                json.dumps(row[f], ensure_ascii=False, separators=(",", ":"))
                if f == "delta"
                else ("" if row[f] is None else row[f])
                for f in FIELDS
            ]
        )
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
