"""Prices and what usage costs (docs/costs.md).

- ``PriceBook``: a tenant's prices (its own, then the platform's), found by a model's id
  or alias and the time of the usage. Usage ingest prices every record with it; a process
  keeps each tenant's book until a price changes anywhere (``changed`` bumps a version in
  the cache that every process reads at most once a second), and each model name's
  look-up once it is made.
- ``cost``: what one record costs under a price, exactly, stored to the nano-dollar
  (core/money.py); ``explain`` says how it was computed.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.core.cache import cache
from django.db import transaction
from django.db.models import Q

from core import money
from costs.models import ModelPrice

VERSION_KEY = "l10:costs:prices-version"
VERSION_EVERY = 1.0  # seconds a process trusts the version it read
NAMES_KEPT = 10_000  # model names a book remembers the look-up of
# Books kept per process: one per tenant that reported usage lately.
_books: dict[int, tuple[int, PriceBook]] = {}
_lock = threading.Lock()
# The version last read from the cache, and when (monotonic seconds).
_version: tuple[int, float] = (-1, 0.0)


@dataclass(frozen=True)
class Price:
    """A price row's figures, as pricing uses them."""

    id: int
    model: str
    effective_from: datetime
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None
    per_call: Decimal

    @classmethod
    def of(cls, row: ModelPrice) -> Price:
        return cls(
            row.pk, row.model, row.effective_from, row.input_per_mtok, row.output_per_mtok, row.cached_input_per_mtok,
            row.per_call,
        )  # fmt: skip


def cost(price: Price, *, input_tokens: int, output_tokens: int, cached_input_tokens: int, api_calls: int) -> Decimal:
    """What the usage costs under ``price``, stored to the nano-dollar. Cached input tokens
    are part of the input tokens, priced at the cached rate (the input rate without one)."""
    cached = min(cached_input_tokens, input_tokens)
    cached_rate = price.input_per_mtok if price.cached_input_per_mtok is None else price.cached_input_per_mtok
    exact = (
        (Decimal(input_tokens - cached) * price.input_per_mtok + Decimal(cached) * cached_rate
         + Decimal(output_tokens) * price.output_per_mtok) / money.MILLION
        + Decimal(api_calls) * price.per_call
    )  # fmt: skip
    return money.stored(exact)


def explain(
    price: Price, *, input_tokens: int, output_tokens: int, cached_input_tokens: int, api_calls: int, total: Decimal
) -> str:
    """How a cost was computed: "1,204 input + 310 output tokens × $3.00/$15.00 per M = $0.008262"."""
    cached = min(cached_input_tokens, input_tokens)
    parts = [f"{input_tokens - cached:,} input"]
    rates = [money.rate(price.input_per_mtok)]
    if cached:
        parts.append(f"{cached:,} cached input")
        cached_rate = price.input_per_mtok if price.cached_input_per_mtok is None else price.cached_input_per_mtok
        rates.append(money.rate(cached_rate))
    parts.append(f"{output_tokens:,} output")
    rates.append(money.rate(price.output_per_mtok))
    text = f"{' + '.join(parts)} tokens × {'/'.join(rates)} per M"
    if price.per_call:
        text += f" + {api_calls:,} call{'s' if api_calls != 1 else ''} × {money.rate(price.per_call)}"
    return f"{text} = ${format(total.normalize(), 'f')}"


class PriceBook:
    """One tenant's prices by model: its own rows first, the platform's for the rest."""

    def __init__(self, rows: Iterable[ModelPrice]) -> None:
        # name → (starts, prices) in time order, per owner rank (0: the tenant's, 1: the platform's)
        self._exact: dict[str, list[list[Price]]] = {}
        self._prefixes: list[tuple[str, int, list[Price]]] = []
        self._names: dict[str, list[tuple[list[datetime], list[Price]]]] = {}
        by_name: dict[tuple[int, str], list[Price]] = {}
        prefixes: dict[tuple[int, str], list[Price]] = {}
        for row in rows:
            rank = 0 if row.tenant_id is not None else 1
            price = Price.of(row)
            for name in {row.model, *row.aliases}:
                name = name.lower()
                if name.endswith("*"):
                    prefixes.setdefault((rank, name[:-1]), []).append(price)
                else:
                    by_name.setdefault((rank, name), []).append(price)
        for (rank, name), prices in by_name.items():
            self._exact.setdefault(name, [[], []])[rank] = sorted(prices, key=lambda p: p.effective_from)
        # Longest prefix first, the tenant's before the platform's.
        self._prefixes = sorted(
            (
                (prefix, rank, sorted(prices, key=lambda p: p.effective_from))
                for (rank, prefix), prices in prefixes.items()
            ),
            key=lambda item: (-len(item[0]), item[1]),
        )

    def find(self, model: str, at: datetime) -> Price | None:
        """The price of ``model`` in effect at ``at``: the latest that started at or before it."""
        for starts, prices in self._candidates(model.lower()):
            index = bisect.bisect_right(starts, at)
            if index:
                return prices[index - 1]
        return None

    def _candidates(self, name: str) -> list[tuple[list[datetime], list[Price]]]:
        """The price lists that may hold ``name``'s price, in the order they are tried:
        its exact name's (the tenant's, then the platform's), then each prefix it starts
        with, longest first. Worked out once per name: every later batch's look-up is a
        dict's (docs/performance.md, "Costs")."""
        found = self._names.get(name)
        if found is None:
            lists = [*self._exact.get(name, ()), *(p for prefix, _, p in self._prefixes if name.startswith(prefix))]
            found = [([p.effective_from for p in prices], prices) for prices in lists if prices]
            if len(self._names) < NAMES_KEPT:  # names come from agents: keep a bounded number
                self._names[name] = found
        return found


def book(tenant_id: int) -> PriceBook:
    """The tenant's price book, read again once any price changed (the change's version is
    read from the cache at most once a second)."""
    global _version
    seen, read_at = _version
    if time.monotonic() - read_at >= VERSION_EVERY:
        try:
            seen = int(cache.get(VERSION_KEY) or 0)
        except Exception:  # the cache is down: read the prices each time, rather than guess
            seen = -1
        _version = (seen, time.monotonic() if seen >= 0 else 0.0)
    kept = _books.get(tenant_id)
    if kept is not None and kept[0] == seen and seen >= 0:
        return kept[1]
    fresh = PriceBook(ModelPrice.objects.filter(Q(tenant_id=tenant_id) | Q(tenant__isnull=True)))
    with _lock:
        _books[tenant_id] = (seen, fresh)
    return fresh


def changed() -> None:
    """Every process reads its price books again, once the price change commits (a book
    read before would keep the old price under the new version)."""

    def bump() -> None:
        global _version
        _books.clear()
        _version = (-1, 0.0)
        try:
            cache.incr(VERSION_KEY)
        except ValueError:  # never set yet
            cache.set(VERSION_KEY, 1, timeout=None)

    _books.clear()  # this process's own reads in this transaction see the change at once
    transaction.on_commit(bump)
