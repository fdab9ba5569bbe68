"""Bulk control: preview, run, audit per agent under one batch id, undo as a whole."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import transaction

from audit.models import AuditEntry
from audit.services import Actor
from control.bulk import bulk_preview, bulk_progress, bulk_run, bulk_select, bulk_start, bulk_undo
from control.models import Batch, ItemOutcome
from control.rules import Action, ControlRequest
from control.services import control_execute
from core.errors import InterfaceError
from fleet.models import Agent, DesiredState
from tenancy.models import Membership, Role
from tests.conftest import wait_for
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fleet(tenant_a) -> list[Agent]:
    """23 running search agents, 2 paused, 1 stopped; and 3 ads agents."""
    agents = [
        AgentFactory.create(tenant=tenant_a, external_id=f"search-{n:02}", labels={"team": "search", "env": "prod"})
        for n in range(26)
    ]
    Agent.objects.filter(pk__in=[a.pk for a in agents[23:25]]).update(desired_state=DesiredState.PAUSED)
    Agent.objects.filter(pk=agents[25].pk).update(desired_state=DesiredState.STOPPED)
    for n in range(3):
        AgentFactory.create(tenant=tenant_a, external_id=f"ads-{n}", labels={"team": "ads", "env": "prod"})
    return agents


def finished(batch: Batch) -> dict[str, object]:
    """The batch's progress once run to its end by what runs tasks here: on the embedded
    default the in-process runner has it already; with a broker and no worker, this
    process runs it, as a worker would."""
    if settings.EMBEDDED:
        wait_for(lambda: Batch.objects.get(pk=batch.pk).finished_at, timeout=30, what="the runner to run the batch")
        return bulk_progress(Batch.objects.get(pk=batch.pk))
    return bulk_run(batch.pk)


def states() -> dict[str, str]:
    return dict(Agent.objects.values_list("external_id", "desired_state"))


def test_a_starter_demoted_before_the_batch_runs_changes_nothing(tenant_a, operator_a, fleet):
    picked = bulk_select(tenant_a, selector="team=search")
    before = states()
    with transaction.atomic():  # the batch starts once this commits, the demotion with it
        batch = bulk_start(tenant=tenant_a, actor=Actor(user=operator_a), action=Action.PAUSE, agents=picked)
        Membership.objects.filter(user=operator_a).update(role=Role.VIEWER)
    progress = finished(batch)
    assert progress["counts"] == {"failed": 26}
    assert states() == before
    assert set(AuditEntry.objects.filter(batch_id=batch.pk).values_list("outcome", "error_code")) == {
        ("denied", "E10004")
    }


def test_a_dry_run_says_what_would_happen_and_writes_nothing(tenant_a, fleet):
    before = states()
    picked = bulk_select(tenant_a, selector="team=search,env=prod")
    assert len(picked) == 26
    preview = bulk_preview(Action.PAUSE, picked)
    assert preview.summary == "23 will be paused; 2 already are; 1 is stopped and will be skipped."
    assert states() == before
    assert not Batch.objects.exists()


def test_a_batch_pauses_the_selection_and_audits_each_agent_under_its_id(tenant_a, operator_a, fleet):
    picked = bulk_select(tenant_a, agent_ids=[str(a.pk) for a in fleet])
    batch = bulk_start(tenant=tenant_a, actor=Actor(user=operator_a), action=Action.PAUSE, agents=picked)
    progress = finished(batch)
    assert progress["finished"] and progress["total"] == 26 and progress["done"] == 26
    assert progress["counts"] == {"success": 23, "noop": 2, "skipped": 1}
    assert sum(state == "paused" for state in states().values()) == 25
    assert states()["ads-0"] == "running"  # not selected
    entries = AuditEntry.objects.filter(batch_id=batch.pk)
    assert entries.count() == 26
    assert entries.filter(outcome="success").count() == 23
    assert entries.filter(outcome="denied", error_code="E10301").count() == 1  # the stopped one
    # Run again (a retried task): nothing is done twice.
    assert bulk_run(batch.pk)["counts"] == {"success": 23, "noop": 2, "skipped": 1}
    assert AuditEntry.objects.filter(batch_id=batch.pk).count() == 26


def test_undo_resumes_exactly_what_the_batch_paused_skipping_agents_changed_since(tenant_a, operator_a, fleet):
    actor = Actor(user=operator_a)
    batch = bulk_start(tenant=tenant_a, actor=actor, action=Action.PAUSE, agents=fleet)
    finished(batch)
    # Someone resumes and pauses one agent again meanwhile: it is no longer this batch's to undo.
    touched = fleet[0]
    for action in (Action.RESUME, Action.PAUSE):
        control_execute(tenant=tenant_a, actor=actor, request=ControlRequest(action, str(touched.pk)))
    undo = bulk_undo(batch=Batch.objects.get(pk=batch.pk), actor=actor)
    progress = finished(undo)
    assert progress["counts"] == {"success": 22, "skipped": 1}
    now = states()
    assert sum(state == "running" for name, state in now.items() if name.startswith("search")) == 22
    assert now[touched.external_id] == "paused"  # left alone
    assert now["search-23"] == now["search-24"] == "paused"  # paused before the batch: not its to undo
    assert AuditEntry.objects.filter(batch_id=undo.pk, outcome="success").count() == 22
    skipped = undo.items.get(outcome=ItemOutcome.SKIPPED)
    assert skipped.agent_id == touched.pk and "changed since" in skipped.message
    with pytest.raises(InterfaceError, match="already undone"):
        bulk_undo(batch=Batch.objects.get(pk=batch.pk), actor=actor)


@pytest.mark.parametrize(
    "kwargs, code",
    [
        ({"selector": "team"}, "E10312"),
        ({"selector": ""}, "E10312"),
        ({"agent_ids": []}, "E10312"),
        ({"agent_ids": ["not-an-id"]}, "E10312"),
    ],
)
def test_a_bad_selection_is_refused(tenant_a, fleet, kwargs, code):
    with pytest.raises(InterfaceError) as refused:
        bulk_select(tenant_a, **kwargs)
    assert str(refused.value.code) == code


def test_who_may_start_what(tenant_a, viewer_a, operator_a, admin_a, fleet):
    with pytest.raises(InterfaceError) as refused:
        bulk_start(tenant=tenant_a, actor=Actor(user=viewer_a), action=Action.PAUSE, agents=fleet)
    assert str(refused.value.code) == "E10004"
    with pytest.raises(InterfaceError) as refused:
        bulk_start(tenant=tenant_a, actor=Actor(user=operator_a), action=Action.STOP, agents=fleet, reason="x")
    assert str(refused.value.code) == "E10004"
    with pytest.raises(InterfaceError) as refused:
        bulk_start(tenant=tenant_a, actor=Actor(user=admin_a), action=Action.STOP, agents=fleet)
    assert str(refused.value.code) == "E10307"
    assert not Batch.objects.exists()


def test_another_tenants_agents_are_not_selected(tenant_a, tenant_b, agent_b, fleet):
    assert bulk_select(tenant_a, agent_ids=[str(agent_b.pk), str(fleet[0].pk)]) == [fleet[0]]


@pytest.mark.postgres
@pytest.mark.redis
def test_a_celery_worker_runs_the_batch(celery_worker_process, tenant_a, operator_a, fleet):
    batch = bulk_start(tenant=tenant_a, actor=Actor(user=operator_a), action=Action.PAUSE, agents=fleet[:10])
    wait_for(lambda: Batch.objects.get(pk=batch.pk).finished_at, timeout=30, what="the worker to run the batch")
    assert Batch.objects.get(pk=batch.pk).items.filter(outcome=ItemOutcome.SUCCESS).count() == 10
