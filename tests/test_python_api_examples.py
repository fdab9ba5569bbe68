"""The examples of docs/python-api.md run against the code, as written."""

from __future__ import annotations

import asyncio
import re
import textwrap
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.utils import timezone

from alerts.models import Alert
from alerts.services import default_rules
from audit.models import AuditEntry
from audit.services import Actor
from costs.services import NewUsage, PriceSpec, price_add, usage_record
from events.models import Event
from tests.dashboard.conftest import live_agent

DOC = Path(__file__).resolve().parent.parent / "docs" / "python-api.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
FACADE_BLOCKS = [b for b in BLOCKS if "l10console.services" in b]


def run_example(code: str, names: dict[str, Any]) -> list[str]:
    """Run an example as the body of a coroutine (the examples use top-level await)."""
    printed: list[str] = []
    scope: dict[str, Any] = {**names, "print": lambda *a: printed.append(" ".join(str(x) for x in a))}
    exec(f"async def __example__():\n{textwrap.indent(code, '    ')}", scope)  # noqa: S102 - our own documentation

    async def main() -> None:
        try:
            await scope["__example__"]()
        finally:
            # The façade's database work ran on sync_to_async's thread: close its connection there.
            await sync_to_async(connections.close_all)()

    asyncio.run(main())
    return printed


def test_the_page_has_an_example_of_each_service():
    assert any("DashboardService(" in b for b in FACADE_BLOCKS)
    assert any("ControlService(" in b for b in FACADE_BLOCKS)
    assert any("WebSocketGateway(" in b for b in FACADE_BLOCKS)
    assert any("InterfaceError" in b for b in FACADE_BLOCKS)
    assert any("AlertService(" in b for b in FACADE_BLOCKS)
    assert any("AuditService(" in b for b in FACADE_BLOCKS)
    assert any("EventService(" in b for b in FACADE_BLOCKS)
    assert any("CostService(" in b for b in FACADE_BLOCKS)


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("code", FACADE_BLOCKS, ids=[f"block-{i}" for i in range(len(FACADE_BLOCKS))])
def test_each_facade_example_runs(code, tenant_a, operator_a, admin_a):
    agent = live_agent(tenant_a, "crawler-7", cpu=41.5)
    live_agent(tenant_a, "crawler-8", cpu=12.0, observed="paused", desired="paused")
    if "AlertService(" in code:
        rule = next(r for r in default_rules(tenant_a) if r.name == "Agent unresponsive")
        Alert.objects.create(
            tenant=tenant_a, rule=rule, agent=agent, fingerprint=f"agent:{agent.pk}", state="firing",
            severity="critical", message="Agent unresponsive on crawler-7", started_at=timezone.now(),
            fired_at=timezone.now(), evaluated_at=timezone.now(),
        )  # fmt: skip
    if "EventService(" in code:
        for n, kind in enumerate(["task.completed", "task.completed", "agent.note"]):
            Event.objects.create(
                tenant=tenant_a, agent=agent, type=kind, occurred_at=datetime(2026, 11, 30, 12, n, tzinfo=UTC),
                data={"task": f"t-{n}"},
            )  # fmt: skip
    if "CostService(" in code:
        price_add(
            spec=PriceSpec("gpt-4o", Decimal("2.5"), Decimal("10"), datetime(2026, 1, 1, tzinfo=UTC)), tenant_id=None,
            actor=Actor(user=admin_a),
        )  # fmt: skip
        now = timezone.now()
        usage_record(
            tenant_id=tenant_a.pk,
            records=[NewUsage(agent.pk, "gpt-4o", now, 400_000, 100_000, 3), NewUsage(agent.pk, "mystery", now, 10, 1)],
        )  # fmt: skip
    printed = run_example(code, {"agent_id": str(agent.pk)})
    if "DashboardService(" in code:
        assert printed[:3] == ["Total agents: 2", "Running: 1", "Paused: 1"]
        assert printed[3:] == ["Agent state: running", "CPU usage: 41.5%"]
    if "ControlService(" in code:
        agent.refresh_from_db()
        assert printed == [
            f"Agent paused: {agent.pk}",
            "Previous state: running",
            "New state: paused",
            "Error E10301: The agent was stopped; resuming cannot bring it back. An admin must restart it.",
            f"Quota: success, version {agent.version}",
        ]
        assert agent.desired_state == "stopped"
        assert agent.quotas == {"api_calls": {"day": 10000}}
    elif "AlertService(" in code:
        assert printed == ["critical: Agent unresponsive on crawler-7", "Acknowledged by oscar", "Snoozed: True"]
    elif "EventService(" in code:
        assert printed == [
            "Total events: 2",
            "2026-11-30 12:01:00+00:00: task.completed - {'task': 't-1'}",
            "2026-11-30 12:00:00+00:00: task.completed - {'task': 't-0'}",
            "In acme: 3",
        ]
    elif "CostService(" in code:
        # 400,000 × $2.50 + 100,000 × $10.00 per M; the unpriced model is not in the total.
        assert printed == ["Total cost: $2.00", "Costs by model: {'gpt-4o': Decimal('2.000000000')}",
                           "Agent cost (30 days): $2.00"]  # fmt: skip
    elif "AuditService(" in code:
        assert len(printed) == 1 and re.fullmatch(r"\S+ \S+: oscar performed agent\.pause on crawler-7", printed[0])
        written = AuditEntry.objects.get(resource_id="crawler-7", tenant=tenant_a)
        assert (written.ip, written.reason, written.actor) == (
            "192.168.1.100",
            "Manual pause for maintenance",
            operator_a,
        )
    elif "InterfaceError" in code:
        assert printed[0].startswith("Error E10")
