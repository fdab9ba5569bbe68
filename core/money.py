"""Money: ``Decimal`` from storage to template, never float, and the one rounding rule
(docs/costs.md, "Rounding").

- A cost is computed exactly (``Decimal`` arithmetic on the stored prices and counts) and
  stored to the nano-dollar, ``PLACES`` (9) decimal places, rounded half to even. Every
  sum is a sum of stored costs, so a total is the total of what each record says.
- Shown to people, an amount is rounded to the cent, half up (``cents``); an amount under
  a cent that is not zero is shown as "< $0.01".
- A ``cost_usd`` quota counts in whole cents: its limit is given in cents, and what was
  spent is rounded up to the cent (``quota_cents``), so an agent stops at its limit, not a
  fraction of a cent past it.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal

PLACES = 9
QUANTUM = Decimal(1).scaleb(-PLACES)  # 0.000000001
CENT = Decimal("0.01")
MILLION = Decimal(1_000_000)
CURRENCIES = ("USD",)
# What a stored cost may hold: 18 digits, 9 after the point (a billion dollars).
MAX_DIGITS = 18


def stored(amount: Decimal) -> Decimal:
    """An exact amount as it is stored: to the nano-dollar, half to even."""
    return amount.quantize(QUANTUM, rounding=ROUND_HALF_EVEN)


def cents(amount: Decimal) -> Decimal:
    """An amount as it is shown: to the cent, half up."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def quota_cents(amount: Decimal) -> int:
    """Money spent, as a ``cost_usd`` quota counts it: whole cents, rounded up."""
    return int((amount * 100).to_integral_value(rounding=ROUND_CEILING))


def from_cents(cents_: int) -> Decimal:
    return Decimal(cents_) / 100


def usd(amount: Decimal | None) -> str:
    """ "$1,234.57", "< $0.01", "-$3.20", or "unknown" for None."""
    if amount is None:
        return "unknown"
    if amount and abs(amount) < Decimal("0.005"):
        return "< $0.01" if amount > 0 else "> -$0.01"
    shown = cents(amount)
    sign = "-" if shown < 0 else ""
    return f"{sign}${abs(shown):,.2f}"


def rate(amount: Decimal) -> str:
    """A price as written in a price list: "$3.00", "$0.075", "$0.0004" (no trailing zeros
    past the cents)."""
    text = format(amount.normalize(), "f")
    whole, _, frac = text.partition(".")
    frac = (frac + "00")[: max(2, len(frac.rstrip("0")))]
    return f"${int(whole):,}.{frac}"
