"""The cost rollups' plain rebuilds against their portable twins, on the same PostgreSQL
data (costs/sql.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from audit.services import Actor
from costs import sql
from costs.models import CostAgentDay, CostHour, CostModelHour
from costs.services import NewUsage, PriceSpec, price_add, usage_record
from tests.factories import AgentFactory
from tests.parity import parity

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]
HOUR = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
FIELDS = (
    "records",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "api_calls",
    "cost_usd",
    "unpriced_records",
)


@pytest.fixture
def usage(tenant_a, tenant_b, agent_a, agent_b, admin_a):
    price_add(
        spec=PriceSpec("gpt-4o", Decimal("2.5"), Decimal("10"), datetime(2026, 1, 1, tzinfo=UTC)), tenant_id=None,
        actor=Actor(user=admin_a),
    )  # fmt: skip
    other = AgentFactory.create(tenant=tenant_a, external_id="worker-2")
    for n, (agent, model) in enumerate([(agent_a, "gpt-4o"), (agent_a, "mystery"), (other, "gpt-4o")] * 4):
        at = HOUR + timedelta(minutes=n * 5)
        usage_record(
            tenant_id=tenant_a.pk,
            records=[NewUsage(agent.pk, model, at, 1_000 + n, 10 * n, api_calls=1, cached_input_tokens=n)],
        )
    usage_record(tenant_id=tenant_b.pk, records=[NewUsage(agent_b.pk, "gpt-4o", HOUR, 5, 5)])
    usage_record(tenant_id=tenant_a.pk, records=[NewUsage(agent_a.pk, "gpt-4o", HOUR + timedelta(hours=1), 9, 9)])


def rows(model, *keys):
    return sorted(model.objects.values_list("tenant_id", *keys, *FIELDS))


@parity(sql.rebuild_hour)
def test_both_rebuild_an_hours_rows_alike(tenant_a, tenant_b, usage):
    made = []
    for path in (sql.rebuild_hour.plain, sql.rebuild_hour.portable):
        CostHour.objects.all().delete()
        CostModelHour.objects.all().delete()
        assert path(tenant_a.pk, HOUR) == 3  # (agent_a, gpt-4o), (agent_a, mystery), (worker-2, gpt-4o)
        assert path(tenant_a.pk, HOUR) == 3  # again: the same rows, not more
        made.append((rows(CostHour, "agent_id", "model", "hour"), rows(CostModelHour, "model", "hour")))
    assert made[0] == made[1]
    hours, models = made[0]
    assert {r[0] for r in hours} == {tenant_a.pk} and {r[2] for r in hours} == {"gpt-4o", "mystery"}
    by_model = {r[1]: r[3:] for r in models}
    assert by_model["gpt-4o"][0] == 8 and by_model["mystery"][0] == 4 and by_model["mystery"][-1] == 4
    assert by_model["mystery"][-2] == Decimal(0)  # unknown costs are not summed as zero dollars: counted apart


@parity(sql.rebuild_day)
def test_both_rebuild_a_days_rows_alike(tenant_a, tenant_b, usage):
    for hour in (HOUR, HOUR + timedelta(hours=1)):
        sql.rebuild_hour(tenant_a.pk, hour)
    sql.rebuild_hour(tenant_b.pk, HOUR)
    day = HOUR.replace(hour=0)
    made = []
    for path in (sql.rebuild_day.plain, sql.rebuild_day.portable):
        CostAgentDay.objects.all().delete()
        assert path(tenant_a.pk, day) == 2
        assert path(tenant_a.pk, day) == 2
        made.append(rows(CostAgentDay, "agent_id", "day"))
    assert made[0] == made[1]
    assert sum(r[3] for r in made[0]) == 13  # every record of the day's two hours
