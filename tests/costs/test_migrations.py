"""Hours rolled up before the by-model and by-day rollups: costs migration 0005 sums them
into the new rows, so summaries read the same totals right after it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from costs.models import CostAgentDay, CostModelHour
from fleet.models import RollupMark

BEFORE = [("costs", "0004_budgets")]
AFTER = [("costs", "0005_day_and_model_rollups")]
T0 = datetime(2026, 11, 29, 22, 0, tzinfo=UTC)


@pytest.fixture
def before_day_rows(transactional_db: None) -> Iterator[MigrationExecutor]:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    yield executor
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_hours_rolled_up_before_are_summed_into_the_new_rollups(before_day_rows):
    old = before_day_rows.loader.project_state(BEFORE).apps
    tenant = old.get_model("tenancy", "Tenant").objects.create(slug="acme", name="Acme")
    agents = [old.get_model("fleet", "Agent").objects.create(tenant=tenant, external_id=f"w{n}") for n in (1, 2)]
    hour_row = old.get_model("costs", "CostHour")
    for n in range(4):  # 22:00 and 23:00 on the 29th, 00:00 and 01:00 on the 30th
        for agent, model in ((agents[0], "gpt-4o"), (agents[1], "gpt-4o"), (agents[1], "mystery")):
            hour_row.objects.create(
                tenant=tenant, agent=agent, model=model, hour=T0 + timedelta(hours=n), records=2, input_tokens=10,
                output_tokens=1, cost_usd=Decimal(0) if model == "mystery" else Decimal("0.000000125"),
                unpriced_records=2 if model == "mystery" else 0,
            )  # fmt: skip

    old.get_model("fleet", "RollupMark").objects.create(name="costs", done_until=T0 + timedelta(hours=5))

    MigrationExecutor(connection).migrate(AFTER)

    by_model = CostModelHour.objects.filter(tenant_id=tenant.pk, hour=T0, model="gpt-4o").get()
    assert (by_model.records, by_model.input_tokens, by_model.cost_usd) == (4, 20, Decimal("0.00000025"))
    days = {(row.agent_id, row.day): row for row in CostAgentDay.objects.filter(tenant_id=tenant.pk)}
    assert len(days) == 4
    second = days[(agents[1].pk, T0.replace(hour=0) + timedelta(days=1))]
    assert (second.records, second.unpriced_records, second.cost_usd) == (8, 4, Decimal("0.00000025"))
    # The rollups start at the first hour row: older usage is read from its records.
    assert RollupMark.objects.get(name="costs-from").done_until == T0
