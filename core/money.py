"""Money: ``Decimal`` from storage to template, never float, and the one rounding rule
(docs/costs.md, "Rounding").

- A cost is computed exactly (``Decimal`` arithmetic on the stored prices and counts) and
  stored to the nano-dollar, ``PLACES`` (9) decimal places, rounded half to even. Every
  sum is a sum of stored costs, so a total is the total of what each record says.
- Shown to people, an amount is rounded to the cent, half up (``cents``); an amount under
  a cent that is not zero is shown as "< $0.01".
- A ``cost_usd`` quota counts in whole cents: its limit is given in cents (typed in
  dollars on the console's pages, ``cents_from_dollars``), and what was spent is rounded
  up to the cent (``quota_cents``), so an agent stops at its limit, not a fraction of a
  cent past it.
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, Inexact, localcontext

from core.inputs import InputProblem

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


# Dollars as people type them: "5", "5.00", "$5", "1,250.50" (commas between thousands
# only, so "12,50" is no amount rather than 1,250), ".50"; ASCII digits only.
_DOLLARS = re.compile(r"\$?(?P<whole>[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)?(?:\.(?P<frac>[0-9]*))?")
DOLLARS_MAX_LENGTH = 40


def cents_from_dollars(text: str) -> int:
    """A dollar amount a person typed ("5.00", "$5", "1,250.50") in whole cents, read
    exactly (``Decimal``, never float). ``InputProblem`` saying why for anything else: a
    negative amount, one finer than a cent, or no amount at all (words, NaN, infinity, an
    exponent, a control character)."""
    value = text.strip()
    negative = value.startswith(("-", "$-"))
    found = _DOLLARS.fullmatch(value.replace("-", "", 1) if negative else value)
    if len(value) > DOLLARS_MAX_LENGTH or found is None or not (found["whole"] or found["frac"]):
        raise InputProblem("is not an amount in US dollars such as 5.00, $5 or 1,250.50")
    if negative:
        raise InputProblem("cannot be negative")
    with localcontext() as exact:
        exact.prec = 2 * DOLLARS_MAX_LENGTH  # room for every digit the text can hold
        exact.traps[Inexact] = True  # and should anything still round, it is refused, not kept
        amount = Decimal(f"{(found['whole'] or '0').replace(',', '')}.{found['frac'] or '0'}")
        if amount % CENT:
            raise InputProblem("is finer than a cent: give at most 2 decimal places")
        return int(amount * 100)


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
