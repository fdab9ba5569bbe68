"""The audit trail's keyed hash chain (docs/audit.md, "The chain").

Each tenant's entries form one chain. An entry's link (``AuditSeal``) holds its place,
``seq`` (1, 2, 3, … without gaps), and its MAC: the HMAC-SHA256, under the key named by
``key_id`` (``settings.AUDIT_KEYS``, from ``L10_AUDIT_KEYS``), of the key id, the place,
the previous link's MAC and the entry's canonical content. Whoever can write to the
database but lacks the key cannot make a link that verifies: an edited, deleted or moved
entry breaks the chain at that place, and entries deleted from its end are caught against
a checkpoint (the head's place and MAC, kept elsewhere).

Sealing is not on the write path: a control operation inserts its entry and is done, and
the sealer (``seal``, a periodic task every ``L10_AUDIT_SEAL_INTERVAL`` seconds) chains
what is pending, per tenant in id order, under a per-tenant advisory lock that only
sealers take. So no write queues on a per-tenant row, and an entry is unsealed for at most
about one interval.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from audit.models import AuditEntry, AuditPending, AuditSeal

log = logging.getLogger(__name__)

# What a link's MAC covers of its entry, in this order (docs/audit.md lists them).
CONTENT = (
    "id", "tenant_id", "occurred_at", "actor_id", "actor_label", "ip", "user_agent", "action", "resource_type",
    "resource_id", "reason", "delta", "outcome", "error_code", "idempotency_key", "request_id", "batch_id",
)  # fmt: skip
BATCH = 2000  # entries sealed per transaction
LOCK_CLASS = 0x4155  # the first key of the sealers' advisory locks ("AU"); the second is the tenant


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, UUID):
        return str(value)
    return value


def canonical(entry: Mapping[str, Any]) -> bytes:
    """An entry's content as the MAC covers it: JSON of ``CONTENT`` with sorted keys, no
    spaces, UTF-8; times in UTC with microseconds, UUIDs as text."""
    return json.dumps(
        {name: _plain(entry[name]) for name in CONTENT}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


def link_mac(key: str, key_id: str, seq: int, previous: str, content: bytes) -> str:
    """``HMAC-SHA256(key, "<key_id>\\n<seq>\\n<previous MAC>\\n" + content)``, in hex; the
    first link's previous MAC is empty."""
    message = f"{key_id}\n{seq}\n{previous}\n".encode() + content
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def current_key() -> tuple[str, str]:
    """(id, secret) of the key new links are sealed with: the first of ``AUDIT_KEYS``."""
    key_id, secret = next(iter(settings.AUDIT_KEYS.items()))
    return key_id, secret


# --- sealing ---------------------------------------------------------------------------


def of_tenant(tenant_id: int | None) -> Q:
    """A tenant's rows, or (None) the platform's own trail."""
    return Q(tenant__isnull=True) if tenant_id is None else Q(tenant_id=tenant_id)


def _claim(tenant_id: int | None) -> bool:
    """The tenant's sealing lock for this transaction; False if another sealer holds it.
    Only sealers take it: writers of entries never wait for it."""
    if connection.vendor != "postgresql":
        return True  # SQLite: one writer at a time, and the embedded runner seals alone
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s, %s)", [LOCK_CLASS, tenant_id or 0])  # 0: the platform
        row = cursor.fetchone()
    return bool(row and row[0])


def seal_tenant(tenant_id: int | None, *, limit: int = BATCH, now: datetime | None = None) -> int:
    """Chain up to ``limit`` of the tenant's pending entries, lowest id first, in one
    transaction; the number sealed (0 if another sealer is at it)."""
    now = now or timezone.now()
    with transaction.atomic():
        if not _claim(tenant_id):
            return 0
        ids = list(
            AuditPending.objects.filter(of_tenant(tenant_id))
            .order_by("entry_id")
            .values_list("entry_id", flat=True)[:limit]
        )
        if not ids:
            return 0
        head = AuditSeal.objects.filter(of_tenant(tenant_id)).order_by("-seq").values_list("seq", "mac").first()
        seq, previous = head or (0, "")
        key_id, key = current_key()
        links = []
        for entry in AuditEntry.objects.filter(pk__in=ids).order_by("pk").values(*CONTENT):
            seq += 1
            previous = link_mac(key, key_id, seq, previous, canonical(entry))
            links.append(
                AuditSeal(
                    entry_id=entry["id"], tenant_id=tenant_id, seq=seq, mac=previous, key_id=key_id, sealed_at=now
                )
            )
        AuditSeal.objects.bulk_create(links)
        AuditPending.objects.filter(entry_id__in=ids).delete()
    return len(links)


def seal(*, now: datetime | None = None, max_batches: int = 50) -> int:
    """Chain every tenant's pending entries (up to ``max_batches`` transactions per tenant
    and run; the next run goes on); the number sealed."""
    total = 0
    tenants = AuditPending.objects.order_by("tenant_id").values_list("tenant_id", flat=True).distinct()
    for tenant_id in list(tenants):
        for _ in range(max_batches):
            sealed = seal_tenant(tenant_id, now=now)
            total += sealed
            if sealed < BATCH:
                break
    return total


# --- verifying -------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A tenant chain's head, kept outside the database: its place and MAC."""

    seq: int
    mac: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.mac}"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        seq, _, mac = text.strip().partition(":")
        if not seq.isdigit() or int(seq) < 1 or len(mac) != 64 or any(c not in "0123456789abcdef" for c in mac):
            raise ValueError("a checkpoint is <seq>:<64 hex digits of the MAC>, as verify_audit prints it")
        return cls(int(seq), mac)


@dataclass
class Verdict:
    """What verifying one tenant's chain found: ``problem`` is the first break, or None."""

    tenant_id: int | None  # None: the platform's own trail
    links: int = 0
    head: Checkpoint | None = None
    problem: str = ""  # empty: no break
    entry_id: int | None = None  # the first broken entry, where there is one
    pending: int = 0
    oldest_pending: datetime | None = None
    keys: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.problem


@dataclass(frozen=True)
class Link:
    """A sealed entry as the chain reads it: its seal's fields and its content, or None
    where the entry is gone."""

    seq: int
    mac: str
    key_id: str
    entry_id: int
    content: Mapping[str, Any] | None


def verify_links(
    tenant_id: int | None, links: Iterable[Link], keys: Mapping[str, str], checkpoint: Checkpoint | None = None
) -> Verdict:
    """Walk a tenant's links in ``seq`` order and stop at the first break. Used on the
    database (``verify``) and on an export (``audit.export``), so both judge alike."""
    verdict = Verdict(tenant_id)
    expected, previous = 1, ""
    seen_checkpoint = checkpoint is None
    for link in links:
        if link.seq != expected:
            verdict.problem = (
                f"link {expected} is missing (the next is {link.seq}): entries were deleted or reordered"
                if link.seq > expected
                else f"link {link.seq} appears again after link {expected - 1}: the chain was reordered"
            )
            verdict.entry_id = link.entry_id
            return verdict
        if link.content is None:
            verdict.problem = f"entry {link.entry_id} (link {link.seq}) is gone: it was deleted"
            verdict.entry_id = link.entry_id
            return verdict
        key = keys.get(link.key_id)
        if key is None:
            verdict.problem = f"link {link.seq} was sealed with key {link.key_id!r}, which L10_AUDIT_KEYS does not list"
            verdict.entry_id = link.entry_id
            return verdict
        if link.content["tenant_id"] != tenant_id or link.content["id"] != link.entry_id:
            verdict.problem = f"link {link.seq} names entry {link.entry_id} of another place or tenant: it was moved"
            verdict.entry_id = link.entry_id
            return verdict
        mac = link_mac(key, link.key_id, link.seq, previous, canonical(link.content))
        if not hmac.compare_digest(mac, link.mac):
            verdict.problem = (
                f"entry {link.entry_id} (link {link.seq}) does not match its MAC: it was edited, "
                "or the entries before it were changed or reordered"
            )
            verdict.entry_id = link.entry_id
            return verdict
        if checkpoint is not None and link.seq == checkpoint.seq:
            if not hmac.compare_digest(link.mac, checkpoint.mac):
                verdict.problem = f"link {link.seq}'s MAC is not the checkpoint's: the chain was rebuilt up to it"
                verdict.entry_id = link.entry_id
                return verdict
            seen_checkpoint = True
        verdict.links += 1
        verdict.keys.add(link.key_id)
        verdict.head = Checkpoint(link.seq, link.mac)
        expected, previous = link.seq + 1, link.mac
    if not seen_checkpoint and checkpoint is not None:
        last = verdict.head.seq if verdict.head else 0
        verdict.problem = (
            f"the chain ends at link {last}, before the checkpoint's link {checkpoint.seq}: "
            "its newest entries were deleted"
        )
    return verdict


def _stored_links(tenant_id: int | None) -> Iterator[Link]:
    """The tenant's links in ``seq`` order, read a page at a time (keyset on ``seq``), each
    with its entry's content (None where the entry is gone)."""
    after = 0
    while True:
        page = list(
            AuditSeal.objects.filter(of_tenant(tenant_id), seq__gt=after)
            .order_by("seq")
            .values_list("seq", "mac", "key_id", "entry_id")[:BATCH]
        )
        if not page:
            return
        contents = {e["id"]: e for e in AuditEntry.objects.filter(pk__in=[p[3] for p in page]).values(*CONTENT)}
        for seq, mac, key_id, entry_id in page:
            yield Link(seq, mac, key_id, entry_id, contents.get(entry_id))
        after = page[-1][0]


def verify(tenant_id: int | None, *, checkpoint: Checkpoint | None = None) -> Verdict:
    """Check a tenant's chain in the database against ``settings.AUDIT_KEYS`` (and a kept
    checkpoint), and count the entries still waiting for the sealer. An entry neither
    sealed nor pending is a break too: it was slipped in with the trigger off."""
    verdict = verify_links(tenant_id, _stored_links(tenant_id), settings.AUDIT_KEYS, checkpoint)
    # EXISTS, not IN: an anti-join, whatever the size of the pending list (NOT IN over a
    # list the planner cannot hash is read once per entry).
    waiting = Exists(AuditPending.objects.filter(entry_id=OuterRef("pk")))
    pending = AuditEntry.objects.filter(of_tenant(tenant_id)).filter(waiting)
    verdict.pending = pending.count()
    verdict.oldest_pending = pending.order_by("occurred_at").values_list("occurred_at", flat=True).first()
    if verdict.ok:
        unchained = (
            AuditEntry.objects.filter(of_tenant(tenant_id), seal__isnull=True)
            .exclude(waiting)
            .order_by("pk")
            .values_list("pk", flat=True)
            .first()
        )
        if unchained is not None:
            verdict.problem = f"entry {unchained} is neither sealed nor waiting to be: it was written around the trail"
            verdict.entry_id = unchained
    return verdict
