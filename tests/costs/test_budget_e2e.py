"""End to end, as in production: an SDK agent spends through its model calls, the console
prices each call as it is stored, a real Celery worker with beat evaluates the budget
rules, and the used-up budget pauses the agent through control (its lock, its audit
entry); the agent hears it on its socket and confirms the pause."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from l10_agent import Agent

from alerts.models import Alert
from audit.models import AuditEntry
from audit.services import Actor
from costs.budgets import budget_set
from costs.services import PriceSpec, price_add
from fleet.models import Agent as AgentRow
from fleet.models import DesiredState, ObservedState
from tests.conftest import LiveServer, celery_worker, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def spender(asgi_server: LiveServer, token_a: str) -> Iterator[Agent]:
    agent = Agent(asgi_server.url, token_a, "spender-1", heartbeat_interval=0.5)
    assert agent.registered.wait(10)
    wait_for(lambda: agent.connected, what="the agent's control socket")
    yield agent
    agent.close(timeout=2)


def test_a_used_up_budget_pauses_the_sdk_agent_which_confirms(tenant_a, admin_a, spender: Agent, tmp_path: Path):
    price_add(
        spec=PriceSpec("gpt-4o", Decimal("2.5"), Decimal("10"), datetime(2026, 1, 1, tzinfo=UTC)), tenant_id=None,
        actor=Actor(user=admin_a),
    )  # fmt: skip
    row = AgentRow.objects.get(external_id="spender-1")
    budget_set(
        tenant_id=tenant_a.pk, actor=Actor(user=admin_a), name="Spender", monthly_usd="1.00", agent_id=row.pk,
        auto_pause=True,
    )  # fmt: skip
    with celery_worker(tmp_path, L10_ALERT_EVAL_INTERVAL="1"):
        with spender.task("expensive"):
            spender.record_usage("gpt-4o", input_tokens=200_000, output_tokens=60_000)  # $0.50 + $0.60
        spender.flush()
        wait_for(
            lambda: AgentRow.objects.get(pk=row.pk).desired_state == DesiredState.PAUSED, timeout=30,
            what="the budget's pause",
        )  # fmt: skip
        wait_for(lambda: spender.state == "paused", timeout=10, what="the agent hearing the pause")
        wait_for(
            lambda: AgentRow.objects.get(pk=row.pk).observed_state == ObservedState.PAUSED, timeout=10,
            what="the agent confirming the pause",
        )  # fmt: skip
    paused = AgentRow.objects.get(pk=row.pk)
    assert paused.pause_reason == "paused by budget “Spender”: $1.10 of $1.00 used"
    entry = AuditEntry.objects.get(action="agent.pause", resource_id=str(row.pk))
    assert (entry.actor_label, entry.outcome) == ("budget", "success")
    fired = Alert.objects.filter(rule__name="Budget used up", state="firing").values_list("severity", flat=True)
    assert list(fired) == ["critical"]
