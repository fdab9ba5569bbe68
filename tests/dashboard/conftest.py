from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from fleet.models import Agent, DesiredState, MetricMinute, ObservedState
from tests.factories import AgentFactory


def live_agent(
    tenant,
    external_id: str,
    *,
    cpu: float | None,
    observed=ObservedState.RUNNING,
    desired=DesiredState.RUNNING,
    **extra,
) -> Agent:
    now = timezone.now()
    return AgentFactory.create(
        tenant=tenant,
        external_id=external_id,
        name=external_id.replace("-", " ").title(),
        observed_state=observed,
        desired_state=desired,
        last_heartbeat_at=extra.pop("last_heartbeat_at", now),
        metrics_at=extra.pop("metrics_at", now),
        cpu_percent=cpu,
        memory_mb=extra.pop("memory", 500.0),
        tokens_per_min=extra.pop("tokens", 1000.0),
        requests_per_min=extra.pop("requests", 10.0),
        errors_per_min=extra.pop("errors", 0.0),
        **extra,
    )


@pytest.fixture
def acme_fleet(tenant_a):
    """Four agents of tenant A: three running (one of them hot), one told to pause but still running."""
    agents = [
        live_agent(tenant_a, "crawler-1", cpu=10.0, labels={"team": "search", "env": "prod"}),
        live_agent(tenant_a, "crawler-2", cpu=30.0, labels={"team": "search", "env": "staging"}, errors=2.0),
        live_agent(tenant_a, "bidder-1", cpu=95.0, labels={"team": "ads", "env": "prod"}, tokens=9000.0),
        live_agent(tenant_a, "planner-1", cpu=50.0, labels={"team": "research"}, desired=DesiredState.PAUSED),
    ]
    minute = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=2)
    for agent in agents:
        MetricMinute.objects.create(
            agent=agent, tenant=tenant_a, minute=minute, samples=1, cpu_sum=agent.cpu_percent or 0.0,
            cpu_max=agent.cpu_percent or 0.0,
            memory_sum=500.0, memory_max=500.0, tokens=100, requests=10, errors=1, latency_p95_ms=200.0,
        )  # fmt: skip
    return agents


@pytest.fixture
def globex_fleet(tenant_b):
    return [
        live_agent(tenant_b, f"globex-{i}", cpu=70.0, observed=ObservedState.PAUSED, desired=DesiredState.PAUSED)
        for i in range(3)
    ]
