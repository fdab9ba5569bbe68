"""Writes of cost tracking: model usage that agents report, priced as it is stored, and
prices. Usage is always stored, since it is money already spent; what an agent reports
after it was told to stop is flagged; usage of a model without a price is stored with
its cost unknown and priced when its price is added (docs/costs.md)."""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from django.db import transaction

from audit.models import Outcome
from audit.services import Actor, Entry, audit_record
from core import runner
from core.errors import ErrorCode, InterfaceError
from core.records import insert_new, values
from costs import pricing, rollups
from costs.models import ModelPrice, UsageRecord
from realtime import hub

STOPPED_FLAG = "reported after an emergency stop"


@dataclass(frozen=True)
class NewUsage:
    """Usage to store: the reported fields of ``UsageRecord``."""

    agent_id: UUID
    model: str
    occurred_at: datetime
    input_tokens: int = 0
    output_tokens: int = 0
    api_calls: int = 0
    uid: UUID | None = None  # set by a sender, so a retried batch is stored once
    cached_input_tokens: int = 0


def usage_record(*, tenant_id: int, records: Sequence[NewUsage], stopped: Collection[UUID] = ()) -> tuple[int, int]:
    """Store usage, skipping records whose ``uid`` is stored; flag what agents in
    ``stopped`` (told to stop when they reported it) used. Returns (stored, duplicates)."""
    prices = pricing.book(tenant_id)
    rows = []
    for r in records:
        price = prices.find(r.model, r.occurred_at)
        priced = None
        if price is not None:
            priced = pricing.cost(
                price, input_tokens=r.input_tokens, output_tokens=r.output_tokens,
                cached_input_tokens=r.cached_input_tokens, api_calls=r.api_calls,
            )  # fmt: skip
        rows.append(
            UsageRecord(
                tenant_id=tenant_id,
                flagged=r.agent_id in stopped,
                flag_reason=STOPPED_FLAG if r.agent_id in stopped else "",
                price_id=price.id if price else None,
                cost_usd=priced,
                **values(r),
            )
        )
    stored, duplicates = insert_new(UsageRecord, tenant_id, rows)
    rollups.mark_dirty(tenant_id, (row.occurred_at for row in stored))  # late usage: its hour is rolled up again
    if stored:
        announce_spent(tenant_id, {row.agent_id for row in stored})
    return len(stored), duplicates


SPENT_EVERY = 1.0  # seconds: a process says "costs.spent" of a tenant at most this often
SPENT_AGENTS = 500  # agents named in one such event at most; more, and it names none
_spent: dict[int, tuple[float, set[UUID]]] = {}
_spent_lock = threading.Lock()


def announce_spent(tenant_id: int, agents: Iterable[UUID]) -> None:
    """Tell the tenant's live pages that usage was stored (hub topic ``costs.spent``, after
    commit), so their budgets, quota bars and countdowns are read again: at most once a
    second per tenant and process, naming the agents of every batch since the last time
    (docs/costs.md, "Countdowns"). A page hears of a last batch it missed with the agent's
    next heartbeat, or the next usage."""
    now = time.monotonic()
    with _spent_lock:
        last, pending = _spent.get(tenant_id, (0.0, set()))
        if len(pending) <= SPENT_AGENTS:
            pending |= set(agents)
        if now - last < SPENT_EVERY:
            _spent[tenant_id] = (last, pending)
            return
        _spent[tenant_id] = (now, set())
    named = sorted(str(a) for a in pending) if len(pending) <= SPENT_AGENTS else []
    hub.publish(tenant_id, "costs.spent", {"agent_ids": named, "all": len(pending) > SPENT_AGENTS})


# --- prices ------------------------------------------------------------------------------

PRICE_FIELDS = ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok", "per_call")
PRICE_WHOLE_DIGITS = 8  # ModelPrice's amounts: 14 digits, 6 after the point
PRICE_PLACES = 6


@dataclass(frozen=True)
class PriceSpec:
    """A price to add, each amount in USD (per million tokens, or per call)."""

    model: str
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    effective_from: datetime
    cached_input_per_mtok: Decimal | None = None
    per_call: Decimal = Decimal(0)
    provider: str = ""
    aliases: tuple[str, ...] = ()
    currency: str = "USD"
    source: str = ""


def amount(value: object, field: str, *, places: int = PRICE_PLACES, whole: int = PRICE_WHOLE_DIGITS) -> Decimal:
    """A money amount from outside (a form, a file, the admin): a finite, non-negative
    decimal with at most ``places`` decimals and ``whole`` digits before the point. Floats
    are refused: they are not the amount their text says."""
    if isinstance(value, float | bool):
        raise _bad(ErrorCode.COST_TOO_PRECISE, field, f"“{field}” must be given as text or a Decimal, not a float.")
    try:
        found = Decimal(str(value).strip())
    except ArithmeticError:
        raise _bad(ErrorCode.COST_NEGATIVE, field, f"“{field}” is not an amount.") from None
    if not found.is_finite():
        raise _bad(ErrorCode.COST_NEGATIVE, field, f"“{field}” is not an amount.")
    if found < 0:
        raise _bad(ErrorCode.COST_NEGATIVE, field, f"“{field}” cannot be negative.")
    exponent = found.as_tuple().exponent
    decimals = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    if decimals > places and found != found.quantize(Decimal(1).scaleb(-places)):
        raise _bad(ErrorCode.COST_TOO_PRECISE, field, f"“{field}” has more than {places} decimal places.")
    if found.adjusted() >= whole:
        raise _bad(ErrorCode.COST_TOO_PRECISE, field, f"“{field}” has more than {whole} digits before the point.")
    return found.quantize(Decimal(1).scaleb(-places))


def _bad(code: ErrorCode, field: str, message: str) -> InterfaceError:
    return InterfaceError(code, message, details={"field": field})


def price_check(spec: PriceSpec, *, tenant_id: int | None) -> None:
    """Refuse what the price cannot be (E10602-E10605); nothing is written."""
    if spec.currency != "USD":
        raise _bad(ErrorCode.COST_UNKNOWN_CURRENCY, "currency", f"“{spec.currency[:10]}” is not a currency kept here.")
    for field in PRICE_FIELDS:
        value = getattr(spec, field)
        if value is not None:
            amount(value, field)
    names = {spec.model.lower(), *(a.lower() for a in spec.aliases)}
    same_owner = ModelPrice.objects.filter(effective_from=spec.effective_from)
    same_owner = same_owner.filter(tenant__isnull=True) if tenant_id is None else same_owner.filter(tenant_id=tenant_id)
    for other in same_owner.only("model", "aliases"):
        if names & {other.model.lower(), *(a.lower() for a in other.aliases)}:
            raise _bad(
                ErrorCode.COST_PRICE_OVERLAP, "effective_from",
                f"A price of {other.model} from {spec.effective_from:%Y-%m-%d %H:%M} UTC already exists.",
            )  # fmt: skip


@transaction.atomic
def price_add(*, spec: PriceSpec, tenant_id: int | None, actor: Actor) -> ModelPrice:
    """Add a price (a tenant's, or the platform's for None), audited; the usage of its model
    that has no price yet is priced after commit (``costs.tasks.price_unpriced``)."""
    price_check(spec, tenant_id=tenant_id)
    row = ModelPrice.objects.create(
        tenant_id=tenant_id, provider=spec.provider, model=spec.model, aliases=list(spec.aliases),
        input_per_mtok=amount(spec.input_per_mtok, "input_per_mtok"),
        output_per_mtok=amount(spec.output_per_mtok, "output_per_mtok"),
        cached_input_per_mtok=None if spec.cached_input_per_mtok is None else amount(
            spec.cached_input_per_mtok, "cached_input_per_mtok"
        ),
        per_call=amount(spec.per_call, "per_call"), currency=spec.currency, effective_from=spec.effective_from,
        source=spec.source[:100],
    )  # fmt: skip
    audit_record(
        tenant_id=tenant_id, actor=actor,
        entry=Entry(
            "price.add", "price", str(row.pk), Outcome.SUCCESS,
            delta={"model": spec.model, **{f: str(getattr(row, f)) for f in PRICE_FIELDS if getattr(row, f) is not None},
                   "effective_from": spec.effective_from.isoformat()},
        ),
    )  # fmt: skip
    pricing.changed()
    runner.enqueue("costs.tasks.price_unpriced", tenant_id)
    return row


def price_unpriced(*, tenant_id: int | None, batch: int = 5_000) -> int:
    """Price the usage stored without a price that the tenant's prices (every tenant's, for
    None) now cover, a batch at a time in id order; returns how many were priced."""
    tenants = (
        [tenant_id] if tenant_id is not None
        else list(UsageRecord.objects.filter(cost_usd__isnull=True).values_list("tenant_id", flat=True).distinct())
    )  # fmt: skip
    priced = 0
    for tenant in tenants:
        prices = pricing.book(tenant)
        after = 0
        while True:
            rows = list(
                UsageRecord.objects.filter(tenant_id=tenant, cost_usd__isnull=True, pk__gt=after).order_by("pk")[:batch]
            )
            if not rows:
                break
            after = rows[-1].pk
            found = []
            for row in rows:
                price = prices.find(row.model, row.occurred_at)
                if price is None:
                    continue
                row.price_id = price.id
                row.cost_usd = pricing.cost(
                    price, input_tokens=row.input_tokens, output_tokens=row.output_tokens,
                    cached_input_tokens=row.cached_input_tokens, api_calls=row.api_calls,
                )  # fmt: skip
                found.append(row)
            with transaction.atomic():
                # Only rows still unpriced: a concurrent run priced the rest already.
                for row in found:
                    priced += UsageRecord.objects.filter(pk=row.pk, cost_usd__isnull=True).update(
                        price_id=row.price_id, cost_usd=row.cost_usd
                    )
                rollups.mark_dirty(tenant, (row.occurred_at for row in found))
    return priced


# --- corrections -------------------------------------------------------------------------


@dataclass(frozen=True)
class Repricing:
    """What correcting a price does to the usage it priced: how many records, and the
    difference in their total cost (new less old)."""

    records: int
    before: Decimal
    after: Decimal

    @property
    def difference(self) -> Decimal:
        return self.after - self.before


def _corrected(price: ModelPrice, figures: dict[str, Decimal | None]) -> pricing.Price:
    return pricing.Price(
        price.pk, price.model, price.effective_from, figures["input_per_mtok"] or Decimal(0),
        figures["output_per_mtok"] or Decimal(0), figures["cached_input_per_mtok"], figures["per_call"] or Decimal(0),
    )  # fmt: skip


def reprice_preview(price: ModelPrice, figures: dict[str, Decimal | None], *, chunk: int = 5_000) -> Repricing:
    """The dry run of a correction: each record the price made, costed again under the
    new figures, exactly as the correction would store it; nothing is written."""
    fixed = _corrected(price, figures)
    records, before, after, last = 0, Decimal(0), Decimal(0), 0
    rows = UsageRecord.objects.filter(price=price).order_by("pk")
    while batch := list(
        rows.filter(pk__gt=last).values_list(
            "pk", "input_tokens", "output_tokens", "cached_input_tokens", "api_calls", "cost_usd"
        )[:chunk]
    ):
        for pk, inp, out, cached, calls, cost in batch:
            records += 1
            before += cost or Decimal(0)
            after += pricing.cost(
                fixed, input_tokens=inp, output_tokens=out, cached_input_tokens=cached, api_calls=calls
            )
            last = pk
    return Repricing(records, before, after)


@transaction.atomic
def price_correct(*, price: ModelPrice, figures: dict[str, Decimal | None], actor: Actor) -> Repricing:
    """Correct a price's figures (its start stays) and re-price, after commit and in
    batches (``costs.tasks.reprice``), the usage it priced; audited with the dry run's
    figures. Returns the dry run."""
    checked: dict[str, Decimal | None] = {
        f: None if figures.get(f) is None and f == "cached_input_per_mtok" else amount(figures.get(f) or "0", f)
        for f in PRICE_FIELDS
    }
    preview = reprice_preview(price, checked)
    before = {f: str(getattr(price, f)) for f in PRICE_FIELDS}
    ModelPrice.objects.filter(pk=price.pk).update(**checked)
    audit_record(
        tenant_id=price.tenant_id, actor=actor,
        entry=Entry(
            "price.correct", "price", str(price.pk), Outcome.SUCCESS,
            delta={
                **{f: {"from": before[f], "to": None if checked[f] is None else str(checked[f])} for f in PRICE_FIELDS},
                "records": preview.records, "difference_usd": str(preview.difference),
            },
        ),
    )  # fmt: skip
    pricing.changed()
    runner.enqueue("costs.tasks.reprice", price.pk)
    return preview


def reprice(*, price_id: int, batch: int = 5_000) -> int:
    """Store the cost of each record ``price_id`` priced under its figures now, a batch at
    a time in id order (each batch its own transaction, its hours marked for the rollups);
    returns the records changed."""
    price = ModelPrice.objects.filter(pk=price_id).first()
    if price is None:
        return 0
    fixed = pricing.Price.of(price)
    changed, last = 0, 0
    while True:
        rows = list(UsageRecord.objects.filter(price_id=price_id, pk__gt=last).order_by("pk")[:batch])
        if not rows:
            return changed
        last = rows[-1].pk
        moved = []
        for row in rows:
            cost = pricing.cost(
                fixed, input_tokens=row.input_tokens, output_tokens=row.output_tokens,
                cached_input_tokens=row.cached_input_tokens, api_calls=row.api_calls,
            )  # fmt: skip
            if cost != row.cost_usd:
                row.cost_usd = cost
                moved.append(row)
        with transaction.atomic():
            UsageRecord.objects.bulk_update(moved, ["cost_usd"], batch_size=1000)
            for tenant in {r.tenant_id for r in moved}:  # the platform's price: every tenant's records
                rollups.mark_dirty(tenant, (r.occurred_at for r in moved if r.tenant_id == tenant))
        changed += len(moved)
