"""The alerts tests' fleet: three agents reporting, one cool (alerts/evaluation.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.models import AlertRule
from fleet.models import Agent, MetricMinute
from tests.factories import AgentFactory

NOW = datetime(2026, 11, 30, 12, 0, 30, tzinfo=UTC)


def minutes(
    agent: Agent, *, cpu: float, count: int = 5, requests: int = 10, errors: int = 0, tokens: int = 100
) -> None:
    """``count`` minute rows ending with the current minute, six reports each."""
    for back in range(count):
        MetricMinute.objects.create(
            agent=agent, tenant_id=agent.tenant_id, minute=NOW.replace(second=0) - timedelta(minutes=back), samples=6,
            cpu_sum=6 * cpu, cpu_max=cpu + 5, memory_sum=6 * 512.0, memory_max=600.0, tokens=tokens,
            requests=requests, errors=errors, latency_p95_ms=200.0 + back,
        )  # fmt: skip


@pytest.fixture
def fleet(tenant_a):
    AlertRule.objects.filter(tenant=tenant_a).delete()  # the default rules are tested on their own
    hot = AgentFactory.create(tenant=tenant_a, external_id="hot", labels={"team": "search"})
    cool = AgentFactory.create(tenant=tenant_a, external_id="cool", labels={"team": "search"})
    other = AgentFactory.create(tenant=tenant_a, external_id="other", labels={"team": "ads"})
    minutes(hot, cpu=92.0, errors=3)
    minutes(cool, cpu=20.0)
    minutes(other, cpu=95.0)
    return hot, cool, other
