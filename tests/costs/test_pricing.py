"""Prices and what usage costs (costs/pricing.py, costs/services.py; docs/costs.md): the
price in effect at a record's time, sums that match a hand computation to the cent,
unpriced usage kept as unknown and priced once its price is added, and the refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from audit.services import Actor
from core import money
from core.errors import InterfaceError
from costs import pricing
from costs.models import ModelPrice, UsageRecord
from costs.services import NewUsage, PriceSpec, amount, price_add, price_unpriced, usage_record
from tests.ingest.test_ingest_api import post

pytestmark = pytest.mark.django_db
CHANGE = datetime(2026, 11, 1, tzinfo=UTC)


def spec(model="claude-sonnet-4", inp="3", out="15", at=datetime(2026, 1, 1, tzinfo=UTC), **extra) -> PriceSpec:
    return PriceSpec(model=model, input_per_mtok=Decimal(inp), output_per_mtok=Decimal(out), effective_from=at, **extra)


def use(agent, model="claude-sonnet-4", at=None, inp=1_204, out=310, cached=0, calls=1) -> UsageRecord:
    usage_record(
        tenant_id=agent.tenant_id,
        records=[NewUsage(agent.pk, model, at or timezone.now(), inp, out, calls, cached_input_tokens=cached)],
    )
    return UsageRecord.objects.filter(agent=agent).latest("pk")


@pytest.fixture
def admin(admin_a):
    return Actor(user=admin_a)


def test_a_record_is_priced_with_the_price_in_effect_at_its_time(tenant_a, agent_a, admin):
    old = price_add(spec=spec(), tenant_id=None, actor=admin)
    new = price_add(spec=spec(inp="2", out="10", at=CHANGE), tenant_id=None, actor=admin)
    before = use(agent_a, at=CHANGE - timedelta(seconds=1))
    at_change = use(agent_a, at=CHANGE)
    assert (before.price_id, before.cost_usd) == (old.pk, Decimal("0.008262000"))  # 1,204 × 3 + 310 × 15, per M
    assert (at_change.price_id, at_change.cost_usd) == (new.pk, Decimal("0.005508000"))  # 1,204 × 2 + 310 × 10


def test_the_explanation_says_how_a_cost_was_made(tenant_a, agent_a, admin):
    price_add(spec=spec(), tenant_id=None, actor=admin)
    record = use(agent_a)
    price = pricing.Price.of(ModelPrice.objects.get())
    said = pricing.explain(
        price, input_tokens=record.input_tokens, output_tokens=record.output_tokens, cached_input_tokens=0,
        api_calls=1, total=record.cost_usd or Decimal(0),
    )  # fmt: skip
    assert said == "1,204 input + 310 output tokens × $3.00/$15.00 per M = $0.008262"


def test_cached_input_and_calls_have_their_own_prices(tenant_a, agent_a, admin):
    price_add(spec=spec(cached_input_per_mtok=Decimal("0.30"), per_call=Decimal("0.0004")), tenant_id=None, actor=admin)
    record = use(agent_a, inp=10_000, out=1_000, cached=8_000, calls=3)
    # 2,000 × 3 + 8,000 × 0.30 + 1,000 × 15, per M, + 3 × 0.0004
    assert record.cost_usd == Decimal("0.006000") + Decimal("0.002400") + Decimal("0.015000") + Decimal("0.0012")


def test_sums_of_many_records_match_a_hand_computation_to_the_cent(tenant_a, agent_a, admin):
    price_add(spec=spec(inp="0.15", out="0.6", model="gpt-4o-mini"), tenant_id=None, actor=admin)
    for n in range(1, 301):
        use(agent_a, model="gpt-4o-mini", inp=997 * n, out=13 * n)
    # By hand: 1 + … + 300 = 45,150 records' worth of 997 input and 13 output tokens at
    # $0.15 and $0.60 per M: 45,150 × (149.55 + 7.8) / 1,000,000 = $7.1043525.
    by_hand = Decimal("7.1043525")
    stored = sum((r.cost_usd or Decimal(0) for r in UsageRecord.objects.filter(agent=agent_a)), Decimal(0))
    assert stored == by_hand  # every record's cost is exact to the nano-dollar here
    assert money.cents(stored) == Decimal("7.10") and money.usd(stored) == "$7.10"


def test_dated_ids_aliases_and_the_tenants_own_price(tenant_a, tenant_b, agent_a, agent_b, admin):
    price_add(spec=spec(aliases=("claude-sonnet-4-2025*", "sonnet-four")), tenant_id=None, actor=admin)
    price_add(spec=spec(inp="1", out="5"), tenant_id=tenant_a.pk, actor=admin)  # Acme's negotiated price
    assert use(agent_a, model="claude-sonnet-4").cost_usd == Decimal("0.002754000")  # 1,204 × 1 + 310 × 5
    assert use(agent_b, model="claude-sonnet-4-20250514").cost_usd == Decimal("0.008262000")  # the list's price
    assert use(agent_b, model="SONNET-FOUR").cost_usd == Decimal("0.008262000")


def test_unpriced_usage_is_unknown_not_zero_and_is_priced_when_its_price_comes(
    tenant_a, tenant_b, agent_a, agent_b, admin
):
    theirs = use(agent_b, model="mystery-1")
    ours = [use(agent_a, model="mystery-1", at=timezone.now() - timedelta(days=d)) for d in (0, 1, 2)]
    assert all(r.cost_usd is None and r.price_id is None for r in [*ours, theirs])

    price_add(spec=spec(model="mystery-1", inp="1", out="2", at=timezone.now() - timedelta(days=1, hours=1)),
              tenant_id=tenant_a.pk, actor=admin)  # fmt: skip
    assert price_unpriced(tenant_id=tenant_a.pk) == 2  # the two days the price covers
    costs = {r.pk: r.cost_usd for r in UsageRecord.objects.filter(pk__in=[r.pk for r in ours])}
    assert costs[ours[0].pk] == costs[ours[1].pk] == Decimal("0.001824000") and costs[ours[2].pk] is None
    assert UsageRecord.objects.get(pk=theirs.pk).cost_usd is None  # another tenant's price is not Globex's
    assert price_unpriced(tenant_id=tenant_a.pk) == 0  # again: nothing left to do


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"input_per_mtok": Decimal("-1")}, "E10602"),
        ({"output_per_mtok": Decimal("0.0000001")}, "E10603"),
        ({"per_call": Decimal("123456789")}, "E10603"),
        ({"currency": "EUR"}, "E10605"),
    ],
)
def test_a_bad_price_is_refused_and_nothing_is_stored(tenant_a, admin, changes, code):
    base = spec()
    with pytest.raises(InterfaceError) as refused:
        price_add(spec=PriceSpec(**{**base.__dict__, **changes}), tenant_id=tenant_a.pk, actor=admin)
    assert refused.value.code == code
    assert not ModelPrice.objects.exists() and not AuditEntry.objects.filter(action="price.add").exists()


def test_two_prices_of_one_model_cannot_start_at_the_same_time(tenant_a, admin):
    price_add(spec=spec(aliases=("sonnet",)), tenant_id=tenant_a.pk, actor=admin)
    for clash in (spec(), spec(model="sonnet")):
        with pytest.raises(InterfaceError) as refused:
            price_add(spec=clash, tenant_id=tenant_a.pk, actor=admin)
        assert refused.value.code == "E10604"
    price_add(spec=spec(), tenant_id=None, actor=admin)  # the platform's list is another owner
    assert ModelPrice.objects.count() == 2


def test_adding_a_price_is_audited(tenant_a, admin):
    row = price_add(spec=spec(), tenant_id=tenant_a.pk, actor=admin)
    entry = AuditEntry.objects.get(action="price.add")
    assert (entry.tenant_id, entry.resource_id, entry.actor_label) == (tenant_a.pk, str(row.pk), "alice")
    assert entry.delta["input_per_mtok"] == "3.000000" and entry.delta["model"] == "claude-sonnet-4"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("3", Decimal("3")),
        ("0.075", Decimal("0.075")),
        ("1.5000000", Decimal("1.5")),
        (Decimal("2.10"), Decimal("2.1")),
    ],
)
def test_amounts_from_outside_are_read_exactly(given, expected):
    assert amount(given, "price") == expected


@pytest.mark.parametrize(
    ("given", "code"), [(0.1, "E10603"), ("abc", "E10602"), ("NaN", "E10602"), ("-0.01", "E10602")]
)
def test_amounts_that_are_not_amounts_are_refused(given, code):
    with pytest.raises(InterfaceError) as refused:
        amount(given, "price")
    assert refused.value.code == code


def test_usage_reported_over_the_api_is_priced_as_it_is_stored(tenant_a, agent_a, token_a, admin):
    price_add(spec=spec(cached_input_per_mtok=Decimal("0.3")), tenant_id=None, actor=admin)
    at = timezone.now().isoformat()
    body = {"records": [
        {"external_id": "worker-1", "model": "claude-sonnet-4", "input_tokens": 10_000, "output_tokens": 1_000,
         "cached_input_tokens": 8_000, "at": at},
        {"external_id": "worker-1", "model": "not-priced", "input_tokens": 5, "at": at},
    ]}  # fmt: skip
    assert post(token_a, "/usage", body).json() == {"accepted": 2, "duplicates": 0}
    costs = dict(UsageRecord.objects.filter(agent=agent_a).values_list("model", "cost_usd"))
    assert costs == {
        "claude-sonnet-4": Decimal("0.023400000"),
        "not-priced": None,
    }  # 2,000 × 3 + 8,000 × 0.3 + 1,000 × 15
    negative = {"records": [{**body["records"][0], "cached_input_tokens": -1}]}
    assert post(token_a, "/usage", negative).status_code == 422


def test_a_book_remembers_each_names_lookup_and_still_finds_each_time_its_price(tenant_a, admin):
    price_add(spec=spec(aliases=("claude-sonnet-4-*",)), tenant_id=None, actor=admin)
    price_add(spec=spec(inp="6", at=CHANGE, aliases=("claude-sonnet-4-*",)), tenant_id=None, actor=admin)
    price_add(spec=spec(model="claude-sonnet-4-20250514", inp="2"), tenant_id=tenant_a.pk, actor=admin)
    book = pricing.book(tenant_a.pk)

    def rate(name: str, at: datetime) -> Decimal | None:
        found = book.find(name, at)
        return None if found is None else found.input_per_mtok

    for _ in range(2):  # the second time from what the first remembered
        assert rate("claude-sonnet-4-20990101", CHANGE - timedelta(seconds=1)) == Decimal(3)
        assert rate("claude-sonnet-4-20990101", CHANGE) == Decimal(6)
        assert rate("claude-sonnet-4-20250514", CHANGE) == Decimal(2)  # the tenant's exact name beats the prefix
        assert rate("claude-sonnet-4-20250514", datetime(2025, 1, 1, tzinfo=UTC)) is None  # before any
        assert rate("gpt-4o", CHANGE) is None


def test_a_price_changed_by_another_process_is_used_within_about_a_second(tenant_a, agent_a, admin):
    from django.core.cache import cache

    from tests.conftest import wait_for

    price_add(spec=spec(), tenant_id=None, actor=admin)
    kept = pricing.book(tenant_a.pk)
    # Another process's change: its row, and its bump of the version (not this process's
    # own ``changed``, which would drop the books here at once).
    ModelPrice.objects.filter(model="claude-sonnet-4").update(input_per_mtok=Decimal(4))
    cache.set(pricing.VERSION_KEY, int(cache.get(pricing.VERSION_KEY) or 0) + 1, timeout=None)
    wait_for(lambda: pricing.book(tenant_a.pk) is not kept, timeout=10, what="the book read again")
    found = pricing.book(tenant_a.pk).find("claude-sonnet-4", CHANGE)
    assert found is not None and found.input_per_mtok == Decimal(4)
