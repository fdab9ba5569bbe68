"""Budgets through the alert manager (alerts/evaluation.py, costs/budgets.py): alerts at
50, 80 and 100 % from the tenant's budget rules, and a used-up budget that pauses its
agents through control as the system (locked, audited), resumed when it is raised."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from alerts.evaluation import evaluate
from alerts.models import Alert, AlertRule
from alerts.services import default_rules
from audit.models import AuditEntry
from audit.services import Actor
from costs.budgets import budget_set
from costs.services import NewUsage, PriceSpec, price_add, usage_record
from fleet.models import Agent, DesiredState
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(tenant_a, agent_a, admin_a):
    AlertRule.objects.filter(tenant=tenant_a).exclude(metric="budget_use_pct").delete()  # the others have their tests
    assert {r.name for r in default_rules(tenant_a) if r.metric == "budget_use_pct"} == {
        "Budget 50 % used", "Budget 80 % used", "Budget used up",
    }  # fmt: skip
    price_add(
        spec=PriceSpec("m", Decimal("1"), Decimal("0"), datetime(2026, 1, 1, tzinfo=UTC)), tenant_id=None,
        actor=Actor(user=admin_a),
    )  # fmt: skip
    return Actor(user=admin_a)


def spend(agent, dollars: str) -> None:
    tokens = int(Decimal(dollars) * 1_000_000)  # $1 per million input tokens
    usage_record(
        tenant_id=agent.tenant_id, records=[NewUsage(agent.pk, "m", timezone.now() - timedelta(seconds=5), tokens, 0)]
    )


def firing(tenant) -> dict[str, str]:
    return dict(Alert.objects.filter(tenant=tenant, state="firing").values_list("rule__name", "severity"))


def test_alerts_fire_at_50_80_and_100_percent(tenant_a, agent_a, setup):
    budget_set(tenant_id=tenant_a.pk, actor=setup, name="Acme", monthly_usd="10")
    spend(agent_a, "4.99")
    evaluate()
    assert firing(tenant_a) == {}
    spend(agent_a, "0.01")
    evaluate()
    assert firing(tenant_a) == {"Budget 50 % used": "info"}
    spend(agent_a, "3")
    evaluate()
    assert firing(tenant_a) == {"Budget 50 % used": "info", "Budget 80 % used": "warning"}
    spend(agent_a, "2")
    evaluate()
    assert firing(tenant_a)["Budget used up"] == "critical"
    alert = Alert.objects.get(rule__name="Budget used up")
    assert alert.message == "Budget used up: Acme, $10.00 of $10.00" and alert.agent_id is None
    # Raised: the 80 and 100 % alerts resolve; a budget not set to pause paused nothing.
    budget_set(tenant_id=tenant_a.pk, actor=setup, name="Acme", monthly_usd="15")
    evaluate()
    assert firing(tenant_a) == {"Budget 50 % used": "info"}
    assert Agent.objects.get(pk=agent_a.pk).desired_state == DesiredState.RUNNING


def test_a_used_up_budget_pauses_its_agents_through_control_and_raising_it_resumes_them(tenant_a, agent_a, setup):
    other = AgentFactory.create(tenant=tenant_a, external_id="ads-1", labels={"team": "ads"})
    agent_a.labels = {"team": "search"}
    agent_a.save()
    budget_set(
        tenant_id=tenant_a.pk, actor=setup, name="Search", monthly_usd="2", selector="team=search", auto_pause=True
    )
    spend(agent_a, "2")
    spend(other, "50")  # another team's spending pauses nothing of Search's budget
    evaluate()
    paused = Agent.objects.get(pk=agent_a.pk)
    assert paused.desired_state == DesiredState.PAUSED
    assert paused.pause_reason == "paused by budget “Search”: $2.00 of $2.00 used"
    assert Agent.objects.get(pk=other.pk).desired_state == DesiredState.RUNNING
    entry = AuditEntry.objects.get(action="agent.pause", resource_id=str(agent_a.pk))
    assert (entry.actor_label, entry.outcome, entry.actor_id) == ("budget", "success", None)
    evaluate()  # still used up: nothing more happens
    assert AuditEntry.objects.filter(action="agent.pause").count() == 1

    budget_set(
        tenant_id=tenant_a.pk, actor=setup, name="Search", monthly_usd="5", selector="team=search", auto_pause=True
    )
    evaluate()
    assert Agent.objects.get(pk=agent_a.pk).desired_state == DesiredState.RUNNING
    assert AuditEntry.objects.get(action="agent.resume").actor_label == "budget"


def test_an_agent_a_person_paused_meanwhile_is_left_paused(tenant_a, agent_a, operator_a, setup):
    from control.rules import Action, ControlRequest
    from control.services import control_execute

    budget_set(tenant_id=tenant_a.pk, actor=setup, name="W1", monthly_usd="1", agent_id=agent_a.pk, auto_pause=True)
    spend(agent_a, "1")
    evaluate()
    assert Agent.objects.get(pk=agent_a.pk).desired_state == DesiredState.PAUSED
    # A person resumes it and pauses it again for their own reason; then the budget is raised.
    for action, reason in ((Action.RESUME, ""), (Action.PAUSE, "investigating")):
        control_execute(actor=Actor(user=operator_a), request=ControlRequest(action, str(agent_a.pk), reason=reason))
    budget_set(tenant_id=tenant_a.pk, actor=setup, name="W1", monthly_usd="10", agent_id=agent_a.pk, auto_pause=True)
    evaluate()
    still = Agent.objects.get(pk=agent_a.pk)
    assert still.desired_state == DesiredState.PAUSED and still.pause_reason == "investigating"


def test_an_admin_removes_a_used_up_budget_its_alert_ends_and_its_agents_resume(
    tenant_a, agent_a, admin_a, setup, django_capture_on_commit_callbacks
):
    from costs.models import Budget
    from tests.conftest import client_for

    budget = budget_set(
        tenant_id=tenant_a.pk, actor=setup, name="Search", monthly_usd="2", agent_id=agent_a.pk, auto_pause=True
    )
    spend(agent_a, "2")
    evaluate()
    assert Agent.objects.get(pk=agent_a.pk).desired_state == DesiredState.PAUSED
    assert firing(tenant_a)["Budget used up"] == "critical"

    with django_capture_on_commit_callbacks(execute=True):
        removed = client_for(admin_a).post(f"/t/acme/costs/budgets/{budget.pk}/remove/", follow=True)
    assert removed.status_code == 200 and "Budget “Search” removed" in removed.content.decode()
    assert not Budget.objects.filter(pk=budget.pk).exists()
    entry = AuditEntry.objects.get(action="budget.remove")
    assert (entry.resource_id, entry.actor_label, entry.outcome) == (str(budget.pk), "alice", "success")
    assert entry.delta["monthly_usd"] == {"from": "2.00", "to": None}
    resumed = Agent.objects.get(pk=agent_a.pk)
    assert resumed.desired_state == DesiredState.RUNNING
    resume = AuditEntry.objects.get(action="agent.resume")
    assert resume.actor_label == "budget" and resume.reason == "budget “Search” removed: $2.00 of $2.00 used"

    evaluate()  # the budget's alerts end; nothing is resumed a second time
    assert firing(tenant_a) == {}
    assert set(Alert.objects.filter(fingerprint=f"budget:{budget.pk}").values_list("state", flat=True)) == {"resolved"}
    assert AuditEntry.objects.filter(action="agent.resume").count() == 1


def test_a_removed_budgets_alert_ends_even_where_its_rule_keeps_alerts_without_data(tenant_a, agent_a, setup):
    from costs.budgets import budget_remove

    AlertRule.objects.filter(tenant=tenant_a, metric="budget_use_pct").update(no_data="keep")
    budget = budget_set(tenant_id=tenant_a.pk, actor=setup, name="Acme", monthly_usd="1")
    spend(agent_a, "1")
    evaluate()
    assert "Budget used up" in firing(tenant_a)
    budget_remove(tenant_id=tenant_a.pk, actor=setup, budget_id=budget.pk)
    evaluate()
    assert firing(tenant_a) == {}


def test_removing_a_budget_resumes_only_the_agents_it_paused(
    tenant_a, agent_a, operator_a, setup, django_capture_on_commit_callbacks
):
    from control.rules import Action, ControlRequest
    from control.services import control_execute
    from costs.budgets import budget_remove

    other = AgentFactory.create(tenant=tenant_a, external_id="ads-1")
    whole = budget_set(tenant_id=tenant_a.pk, actor=setup, name="Acme", monthly_usd="100", auto_pause=True)
    budget_set(tenant_id=tenant_a.pk, actor=setup, name="W1", monthly_usd="1", agent_id=agent_a.pk, auto_pause=True)
    spend(agent_a, "1")
    evaluate()
    assert Agent.objects.get(pk=agent_a.pk).pause_reason.startswith("paused by budget “W1”")
    control_execute(actor=Actor(user=operator_a), request=ControlRequest(Action.PAUSE, str(other.pk), reason="mine"))
    # The whole tenant's budget covers both, and paused neither: both stay as they are.
    with django_capture_on_commit_callbacks(execute=True):
        budget_remove(tenant_id=tenant_a.pk, actor=setup, budget_id=whole.pk)
    assert Agent.objects.get(pk=agent_a.pk).desired_state == DesiredState.PAUSED  # W1 is still used up
    assert Agent.objects.get(pk=other.pk).pause_reason == "mine"
    assert not AuditEntry.objects.filter(action="agent.resume").exists()
