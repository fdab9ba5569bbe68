"""Hourly cost rollups (costs/rollups.py): rebuilding is idempotent, late usage lands in
its own hour, and a summary reads the same totals from rollups and records as from the
records alone, for one tenant only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db.models import F

from audit.services import Actor
from costs import rollups, selectors
from costs.models import CostAgentDay, CostDirtyHour, CostHour, CostModelHour
from costs.services import NewUsage, PriceSpec, price_add, usage_record
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 30, 12, 40, tzinfo=UTC)


@pytest.fixture
def usage(tenant_a, tenant_b, agent_a, agent_b, admin_a):
    price_add(
        spec=PriceSpec("gpt-4o", Decimal("2.5"), Decimal("10"), datetime(2026, 1, 1, tzinfo=UTC)), tenant_id=None,
        actor=Actor(user=admin_a),
    )  # fmt: skip
    for n in range(72):  # three days, one record an hour, and an unpriced one every sixth hour
        at = NOW - timedelta(hours=n, minutes=7)
        records = [NewUsage(agent_a.pk, "gpt-4o", at, 10_000 + n, 1_000)]
        if n % 6 == 0:
            records.append(NewUsage(agent_a.pk, "mystery", at, 5, 5))
        usage_record(tenant_id=tenant_a.pk, records=records)
        usage_record(tenant_id=tenant_b.pk, records=[NewUsage(agent_b.pk, "gpt-4o", at, 999_999, 0)])


def roll_until_now() -> None:
    while (rollups.mark_until() or NOW - timedelta(days=99)) < NOW:
        rollups.rollup_recent(now=NOW)


def summary(tenant, start=NOW - timedelta(days=2, minutes=30), end=NOW) -> selectors.CostBreakdown:
    return selectors.tenant_costs(tenant.pk, start, end)


def test_a_summary_is_the_same_from_rollups_as_from_the_records(tenant_a, usage):
    from_records = summary(tenant_a)
    roll_until_now()
    assert CostHour.objects.filter(tenant=tenant_a).exists()
    from_rollups = summary(tenant_a)
    assert from_rollups == from_records
    assert from_rollups.unpriced_records == 9 and from_rollups.unpriced_models == ["mystery"]
    assert list(from_rollups.cost_by_model) == ["gpt-4o"]  # the unpriced model has no cost, not zero
    # Two days and a half hour back: the records n = 0..48 hours old at :33 past (one in six
    # with an unpriced twin), each 2.5 × (10,000 + n) + 10 × 1,000, per M.
    hand = sum((Decimal("2.5") * (10_000 + n) + Decimal(10_000)) / 1_000_000 for n in range(49))
    assert from_rollups.total_cost_usd == hand


def test_rolling_up_again_gives_the_same_rows(tenant_a, usage):
    roll_until_now()
    fields = ("tenant_id", "agent_id", "model", "hour", "records", "input_tokens", "output_tokens", "cost_usd",
              "unpriced_records")  # fmt: skip
    first = sorted(CostHour.objects.values_list(*fields))
    for hour in {h for (_, _, _, h, *_rest) in first}:
        rollups.rebuild(tenant_a.pk, hour)
    rollups.rollup_recent(now=NOW)
    assert sorted(CostHour.objects.values_list(*fields)) == first


def test_late_usage_lands_in_its_hour(tenant_a, agent_a, usage):
    roll_until_now()
    before = summary(tenant_a)
    late = NOW - timedelta(hours=30, minutes=50)
    usage_record(tenant_id=tenant_a.pk, records=[NewUsage(agent_a.pk, "gpt-4o", late, 400_000, 0)])
    hour = late.replace(minute=0, second=0, microsecond=0)
    assert CostDirtyHour.objects.filter(tenant=tenant_a, hour=hour).exists()
    # Read before the rollup catches up: the dirty hour comes from its records.
    assert summary(tenant_a).total_cost_usd == before.total_cost_usd + Decimal("1")  # 400,000 × $2.50 per M
    assert rollups.rollup_dirty() == 1 and not CostDirtyHour.objects.exists()
    assert summary(tenant_a).total_cost_usd == before.total_cost_usd + Decimal("1")
    assert CostHour.objects.get(tenant=tenant_a, hour=hour, model="gpt-4o").records == 2


def test_ranges_that_start_and_end_inside_an_hour(tenant_a, usage):
    start, end = NOW - timedelta(hours=5, minutes=20), NOW - timedelta(hours=2, minutes=3)
    from_records = summary(tenant_a, start, end)
    roll_until_now()
    assert summary(tenant_a, start, end) == from_records
    # Records at :33 past each hour: those of 05:33 … 02:33 ago less the edges: 4 hours.
    assert from_records.tokens_by_model["gpt-4o"] == sum(10_000 + n + 1_000 for n in range(2, 6))


def test_another_tenants_usage_is_never_in_a_summary(tenant_a, tenant_b, usage):
    roll_until_now()
    theirs = summary(tenant_b)
    ours = summary(tenant_a)
    assert theirs.tokens_by_model == {"gpt-4o": 999_999 * 49} and ours.tokens_by_model["gpt-4o"] < 999_999


def test_a_routine_run_rebuilds_each_hour_once_however_many_records_it_has(tenant_a, agent_a, usage):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    roll_until_now()
    hour = NOW.replace(minute=0)
    usage_record(
        tenant_id=tenant_a.pk,
        records=[NewUsage(agent_a.pk, "gpt-4o", hour + timedelta(minutes=m), 10, 1) for m in range(1, 40)],
    )
    with CaptureQueriesContext(connection) as seen:
        rollups.rollup_recent(now=NOW)
    rebuilt = [
        q["sql"]
        for q in seen.captured_queries
        if q["sql"].replace('"', "").lstrip().startswith("DELETE FROM costs_costhour")
    ]
    # The look-back hour and this one, for each tenant with usage there: each once.
    assert len(rebuilt) == len(set(rebuilt)) == 4


def by_agent(tenant, start, end, step=None) -> dict[str, tuple[Decimal | None, int, int, int]]:
    lines = selectors.sums(tenant.pk, start, end, by="agent_id", step=step)
    return {key: (line.cost, line.tokens, line.records, line.unpriced) for key, line in lines.items()}


def read_tables(run) -> set[str]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as seen:
        run()
    tables = ("costs_costagentday", "costs_costmodelhour", "costs_costhour", "costs_usagerecord")
    return {t for q in seen.captured_queries for t in tables if f'FROM "{t}"' in q["sql"]}


def test_agents_over_days_are_summed_from_day_rows_as_the_records_would_be(tenant_a, agent_a, usage):
    other = AgentFactory.create(tenant=tenant_a, external_id="worker-2")
    usage_record(
        tenant_id=tenant_a.pk,
        records=[NewUsage(other.pk, "gpt-4o", NOW - timedelta(hours=n, minutes=3), 1_000, 10) for n in range(0, 72, 5)],
    )
    start = NOW - timedelta(days=2, hours=20)  # two whole days (28 and 29 November) inside
    from_records = by_agent(tenant_a, start, NOW)
    per_day = by_agent(tenant_a, start, NOW, step="day")
    roll_until_now()
    assert by_agent(tenant_a, start, NOW) == from_records
    assert by_agent(tenant_a, start, NOW, step="day") == per_day
    assert set(from_records) == {str(agent_a.pk), str(other.pk)}
    read = read_tables(lambda: by_agent(tenant_a, start, NOW))
    assert {"costs_costagentday", "costs_costhour", "costs_usagerecord"} <= read
    # By model, the tenant's hours come from its by-model rows, never the per-agent ones.
    assert read_tables(lambda: summary(tenant_a, start, NOW)) == {"costs_costmodelhour", "costs_usagerecord"}


def test_a_dirty_hour_sends_its_day_back_to_the_hours_until_it_is_rebuilt(tenant_a, agent_a, usage):
    start = NOW - timedelta(days=2, hours=20)
    roll_until_now()
    before = by_agent(tenant_a, start, NOW)[str(agent_a.pk)]
    assert before[0] is not None
    late = datetime(2026, 11, 29, 5, 20, tzinfo=UTC)  # inside a whole day of the range
    usage_record(tenant_id=tenant_a.pk, records=[NewUsage(agent_a.pk, "gpt-4o", late, 400_000, 0)])
    expected = (before[0] + Decimal(1), before[1] + 400_000, before[2] + 1, before[3])
    assert by_agent(tenant_a, start, NOW)[str(agent_a.pk)] == expected  # the day from its hours and the records
    assert rollups.rollup_dirty() == 1
    assert by_agent(tenant_a, start, NOW)[str(agent_a.pk)] == expected  # the day's row, rebuilt


def test_the_model_and_day_rows_are_the_sums_of_the_hour_rows(tenant_a, agent_a, usage):
    from django.db.models import Sum
    from django.db.models.functions import TruncDay

    roll_until_now()
    usage_record(
        tenant_id=tenant_a.pk,
        records=[NewUsage(agent_a.pk, "gpt-4o", datetime(2026, 11, 28, 9, 1, tzinfo=UTC), 7, 7)],
    )
    rollups.rollup(now=NOW)
    fields = ("records", "input_tokens", "output_tokens", "cached_input_tokens", "api_calls", "cost_usd",
              "unpriced_records")  # fmt: skip
    sums = {f: Sum(f) for f in fields}

    def rows(query, *keys):
        return sorted(
            tuple(row[k] for k in (*keys, *fields)) for row in query.values(*keys).annotate(**sums).order_by()
        )

    hours = CostHour.objects.filter(tenant=tenant_a)
    assert rows(CostModelHour.objects.filter(tenant=tenant_a), "model", "hour") == rows(hours, "model", "hour")
    days = hours.annotate(d=TruncDay("hour", tzinfo=UTC))
    assert [
        r[1:] for r in rows(CostAgentDay.objects.filter(tenant=tenant_a).annotate(d=F("day")), "agent_id", "d")
    ] == [r[1:] for r in rows(days, "agent_id", "d")]
    assert CostAgentDay.objects.filter(tenant=tenant_a).count() == 4  # 27 to 30 November


def test_usage_from_before_the_first_run_is_read_from_its_records(tenant_a, agent_a, usage):
    old = NOW - rollups.FIRST_RUN_REACH - timedelta(days=3)  # older than the first run reaches
    usage_record(tenant_id=tenant_a.pk, records=[NewUsage(agent_a.pk, "gpt-4o", old, 400_000, 0)])  # $1.00
    start = NOW - rollups.FIRST_RUN_REACH - timedelta(days=5)
    from_records = summary(tenant_a, start, NOW)
    roll_until_now()
    assert not CostHour.objects.filter(hour__lt=NOW - rollups.FIRST_RUN_REACH).exists()  # in no rollup
    assert summary(tenant_a, start, NOW) == from_records
    assert by_agent(tenant_a, start, NOW) == by_agent_from_records(tenant_a, start, NOW)


def by_agent_from_records(tenant, start, end):
    from fleet.models import RollupMark

    kept = list(RollupMark.objects.filter(name__in=(rollups.MARK, rollups.FROM_MARK)).values_list("name", "done_until"))
    RollupMark.objects.filter(name__in=(rollups.MARK, rollups.FROM_MARK)).delete()
    try:
        return by_agent(tenant, start, end)
    finally:
        for name, until in kept:
            RollupMark.objects.create(name=name, done_until=until)
