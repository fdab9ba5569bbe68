"""The platform's starting price list, from the published ``genai-prices`` table
(docs/costs.md, "The price list"): read from the installed package, never fetched at run
time; the database stays the source of truth.

Each model of each provider becomes dated price rows of the platform (tenant None): one
per price the table dates (``StartDateConstraint``: from that day, 00:00 UTC), the first
from ``EPOCH``. Its other names come from the table's match rules: exact names, and
prefixes ("claude-sonnet-4-*") for dated ids; rules the console cannot say (contains, a
regular expression) are left out and counted. A model id already taken by an earlier
provider is left to it; the makers of models (``ORIGINS``) are read before resellers. Time-of-day prices (off-peak) and token tiers are
not kept: the standard price, the base tier.

An import adds what is new; a price the table now gives differently for a start the
console already has is added as a correction from now (past costs keep their price).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from importlib.metadata import version
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.models import Outcome
from audit.services import Actor, Entry, audit_record
from core import runner
from costs import pricing
from costs.models import ModelPrice

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
# The makers of models, read first: a name a reseller shares with its maker is the maker's.
ORIGINS = ("openai", "anthropic", "google", "mistral", "deepseek", "x-ai", "cohere", "meta", "moonshotai", "zai")
FIGURES = ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok", "per_call")


@dataclass
class Report:
    added: list[str] = field(default_factory=list)
    corrected: list[str] = field(default_factory=list)
    unchanged: int = 0
    duplicates: int = 0  # models another provider of the table already named
    skipped: list[str] = field(default_factory=list)  # no token price (images, audio only)
    unsaid_rules: int = 0  # match rules left out
    source: str = ""

    def lines(self) -> list[str]:
        out = [
            f"{self.source}: {len(self.added)} price(s) added, {len(self.corrected)} corrected from now, "
            f"{self.unchanged} unchanged."
        ]
        out += [f"  added {name}" for name in self.added[:50]]
        if len(self.added) > 50:
            out.append(f"  … and {len(self.added) - 50} more")
        out += [f"  corrected {name}" for name in self.corrected]
        if self.duplicates:
            out.append(f"{self.duplicates} model id(s) named by two providers: the first provider's price is kept.")
        if self.skipped:
            out.append(f"{len(self.skipped)} model(s) without a token price were left out.")
        if self.unsaid_rules:
            out.append(f"{self.unsaid_rules} match rule(s) the console cannot say were left out (by id only).")
        return out


@dataclass(frozen=True)
class Row:
    provider: str
    model: str
    aliases: tuple[str, ...]
    effective_from: datetime
    figures: tuple[Decimal | None, ...]  # FIGURES, in order


def _names(rule: Any) -> tuple[list[str], int]:
    """(names, rules left out) of a match rule: exact names, and prefixes ending in "*"."""
    kind = type(rule).__name__
    if kind == "ClauseEquals":
        return [rule.equals.lower()], 0
    if kind == "ClauseStartsWith":
        return [rule.starts_with.lower() + "*"], 0
    if kind == "ClauseOr":
        names: list[str] = []
        left = 0
        for clause in rule.or_:
            found, missed = _names(clause)
            names += found
            left += missed
        return names, left
    return [], 1


def _figure(value: Any) -> Decimal | None:
    if value is None:
        return None
    base = getattr(value, "base", value)  # a tiered price: its base tier
    return Decimal(base)


def _figures(prices: Any) -> tuple[Decimal | None, ...] | None:
    input_price, output_price = (
        _figure(getattr(prices, "input_mtok", None)),
        _figure(getattr(prices, "output_mtok", None)),
    )
    if input_price is None and output_price is None:
        return None
    per_thousand = _figure(getattr(prices, "requests_kcount", None))
    return (
        input_price or Decimal(0), output_price or Decimal(0), _figure(getattr(prices, "cache_read_mtok", None)),
        Decimal(0) if per_thousand is None else per_thousand / 1000,
    )  # fmt: skip


def rows(report: Report) -> Iterator[Row]:
    """The table's prices as rows of the platform's list."""
    from genai_prices import data

    taken: set[str] = set()  # model ids and other names, the first priced model's
    providers = sorted(
        data.providers, key=lambda p: (p.id not in ORIGINS, ORIGINS.index(p.id) if p.id in ORIGINS else 0)
    )
    for provider in providers:
        for model in provider.models:
            model_id = model.id.lower()
            if model_id in taken:
                report.duplicates += 1
                continue
            dated = [(None, model.prices)] if not isinstance(model.prices, list) else [
                (c.constraint, c.prices) for c in model.prices
            ]  # fmt: skip
            priced: list[tuple[datetime, tuple[Decimal | None, ...]]] = []
            for constraint, prices in dated:
                start = EPOCH
                if constraint is not None:
                    day = getattr(constraint, "start_date", None)
                    if not isinstance(day, date):
                        continue  # a time-of-day price: not kept
                    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
                figures = _figures(prices)
                if figures is not None:
                    priced.append((start, figures))
            if not priced:
                report.skipped.append(model.id)  # its names stay free for a model with a price
                continue
            names, left = _names(model.match)
            report.unsaid_rules += left
            # A name another model took first stays that model's.
            aliases = tuple(sorted(n for n in set(names) - {model_id} if n not in taken))
            taken.update({model_id, *aliases})
            for start, figures in priced:
                yield Row(provider.id, model.id, aliases, start, figures)


def import_prices(*, actor: Actor, dry_run: bool = False) -> Report:
    """Bring the platform's list up to the installed table; what changed, in a report. One
    audit entry for the import; the usage that had no price is priced after (a task)."""
    report = Report(source=f"genai-prices {version('genai-prices')}")
    now = timezone.now()
    with transaction.atomic():
        kept: dict[tuple[str, datetime], ModelPrice] = {
            (p.model.lower(), p.effective_from): p for p in ModelPrice.objects.filter(tenant__isnull=True)
        }
        latest: dict[str, ModelPrice] = {}
        for p in kept.values():
            if p.model.lower() not in latest or p.effective_from > latest[p.model.lower()].effective_from:
                latest[p.model.lower()] = p
        new: list[ModelPrice] = []
        for row in rows(report):
            name = row.model.lower()
            figures = dict(zip(FIGURES, row.figures, strict=True))
            have = kept.get((name, row.effective_from))
            if have is None:
                report.added.append(f"{row.model} from {row.effective_from:%Y-%m-%d}")
                new.append(_price(row, row.effective_from, figures, report.source))
                continue
            if all(_same(getattr(have, f), figures[f]) for f in FIGURES):
                report.unchanged += 1
                continue
            current = latest.get(name)
            if current is not None and current.effective_from > row.effective_from:
                report.unchanged += 1  # a later price of the console's own stands
                continue
            report.corrected.append(
                f"{row.model} from {now:%Y-%m-%d %H:%M} (was {_said(have)}, now {_said_figures(figures)})"
            )
            new.append(_price(row, now, figures, report.source))
        if dry_run:
            transaction.set_rollback(True)
            return report
        ModelPrice.objects.bulk_create(new, batch_size=1000)
        audit_record(
            tenant_id=None, actor=actor,
            entry=Entry(
                "price.import", "price_list", report.source[:64], Outcome.SUCCESS,
                delta={"added": len(report.added), "corrected": report.corrected[:100], "unchanged": report.unchanged},
            ),
        )  # fmt: skip
        if new:
            pricing.changed()
            runner.enqueue("costs.tasks.price_unpriced", None)
    return report


def _price(row: Row, start: datetime, figures: dict[str, Decimal | None], source: str) -> ModelPrice:
    return ModelPrice(
        tenant=None, provider=row.provider[:50], model=row.model[:100], aliases=list(row.aliases),
        input_per_mtok=_six(figures["input_per_mtok"]), output_per_mtok=_six(figures["output_per_mtok"]),
        cached_input_per_mtok=None if figures["cached_input_per_mtok"] is None else _six(figures["cached_input_per_mtok"]),
        per_call=_six(figures["per_call"]), effective_from=start, source=source[:100],
    )  # fmt: skip


def _six(value: Decimal | None) -> Decimal:
    return (value or Decimal(0)).quantize(Decimal("0.000001"))


def _same(stored: Decimal | None, given: Decimal | None) -> bool:
    if stored is None or given is None:
        return stored is None and given is None
    return stored == _six(given)


def _said(price: ModelPrice) -> str:
    return f"{price.input_per_mtok.normalize()}/{price.output_per_mtok.normalize()}"


def _said_figures(figures: dict[str, Decimal | None]) -> str:
    return f"{_six(figures['input_per_mtok']).normalize()}/{_six(figures['output_per_mtok']).normalize()}"
