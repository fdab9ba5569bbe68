"""The heartbeat and token lookup have a one-statement path on PostgreSQL and an ORM path
for any database (the embedded SQLite). Both run here, on the same data, and must leave
the same rows and give the same answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fleet import services
from fleet.models import Agent, ApiToken, DesiredState, MetricMinute, ObservedState
from fleet.schemas import HeartbeatIn
from l10console.errors import ErrorCode, InterfaceError
from l10console.lib.tokens import hash_token
from tests.factories import AgentFactory

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

PATHS = {
    "postgres": services._heartbeat_postgres,
    "portable": services._heartbeat_portable,
}

T0 = datetime(2026, 11, 25, 12, 0, 10, tzinfo=UTC)
AGENT_COLUMNS = (
    "observed_state",
    "observed_changed_at",
    "last_heartbeat_at",
    "cpu_percent",
    "memory_mb",
    "latency_p95_ms",
    "tokens_per_min",
    "requests_per_min",
    "errors_per_min",
    "metrics_at",
)
MINUTE_COLUMNS = (
    "minute",
    "samples",
    "cpu_sum",
    "cpu_max",
    "memory_sum",
    "memory_max",
    "tokens",
    "requests",
    "errors",
    "latency_p95_ms",
)


def beat(state: str, metrics: dict[str, Any] | None = None) -> HeartbeatIn:
    return HeartbeatIn.model_validate({"state": state, "metrics": metrics})


def play(path: str, agent: Agent) -> list[tuple[Agent, str]]:
    """Four heartbeats: no metrics, a state change with metrics, the same minute again
    (merged), then the same state in the next minute."""
    run = PATHS[path]
    first = {"cpu_percent": 40.0, "memory_mb": 500.0, "tokens": 600, "requests": 6, "errors": 1, "latency_p95_ms": 90.0}
    second = {"cpu_percent": 70.0, "memory_mb": 450.0, "tokens": 300, "requests": 3, "errors": 0}
    return [
        run(agent.tenant, agent.external_id, beat("starting"), T0),
        run(agent.tenant, agent.external_id, beat("running", first), T0 + timedelta(seconds=10)),
        run(agent.tenant, agent.external_id, beat("running", second), T0 + timedelta(seconds=20)),
        run(agent.tenant, agent.external_id, beat("running", first), T0 + timedelta(seconds=60)),
    ]


def test_both_heartbeat_paths_leave_the_same_rows_and_answer_the_same(tenant_a):
    quotas = {"tokens": {"day": 5000}}
    agents = {
        path: AgentFactory.create(
            tenant=tenant_a,
            external_id=f"agent-{path}",
            desired_state=DesiredState.PAUSED,
            version=3,
            quotas=quotas,
            observed_state=ObservedState.STARTING,
        )
        for path in PATHS
    }
    answers = {path: play(path, agent) for path, agent in agents.items()}

    for path, results in answers.items():
        previous_states = [previous for _, previous in results]
        assert previous_states == ["starting", "starting", "running", "running"], path
        answered = results[-1][0]
        assert (answered.pk, answered.desired_state, answered.version, answered.quotas) == (
            agents[path].pk,
            "paused",
            3,
            quotas,
        ), path
        assert services.AgentControl.of(answered).usage == {"tokens": {"day": 0}}

    rows = {path: Agent.objects.filter(pk=agent.pk).values(*AGENT_COLUMNS).get() for path, agent in agents.items()}
    assert rows["postgres"] == rows["portable"]
    assert rows["postgres"]["observed_changed_at"] == T0 + timedelta(seconds=10)  # kept while unchanged
    assert rows["postgres"]["last_heartbeat_at"] == T0 + timedelta(seconds=60)
    assert rows["postgres"]["tokens_per_min"] == 600 / (10 / 60)

    minutes = {
        path: list(MetricMinute.objects.filter(agent=agent).order_by("minute").values_list(*MINUTE_COLUMNS))
        for path, agent in agents.items()
    }
    assert minutes["postgres"] == minutes["portable"]
    assert minutes["postgres"] == [
        (T0.replace(second=0), 2, 110.0, 70.0, 950.0, 500.0, 900, 9, 1, 90.0),
        (T0.replace(second=0) + timedelta(minutes=1), 1, 40.0, 40.0, 500.0, 500.0, 600, 6, 1, 90.0),
    ]


@pytest.mark.parametrize("path", PATHS)
def test_an_unknown_agent_is_refused_by_both_paths(path, tenant_a, agent_b):
    with pytest.raises(InterfaceError) as caught:
        PATHS[path](tenant_a, agent_b.external_id, beat("running"), T0)  # tenant B's agent
    assert caught.value.code == ErrorCode.INGEST_UNKNOWN_AGENT
    assert Agent.objects.get(pk=agent_b.pk).last_heartbeat_at is None


def test_both_token_lookups_find_the_same_token_and_tenant(token_a, tenant_a):
    digest = hash_token(token_a)
    fast = services._token_by_hash_postgres(digest)
    orm = ApiToken.objects.select_related("tenant").get(token_hash=digest)
    assert fast is not None
    assert (fast.pk, fast.revoked_at, fast.last_used_at) == (orm.pk, orm.revoked_at, orm.last_used_at)
    assert (fast.tenant.pk, fast.tenant.slug, fast.tenant.name) == (tenant_a.pk, "acme", "Acme")
    assert services._token_by_hash_postgres(hash_token("l10_" + "x" * 40)) is None
