"""The state table (fleet/states.py): what is pending, what is stale, one definition for
every page, the list's filter and the overview's count."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from fleet import sql, states
from fleet.models import Agent, DesiredState, ObservedState
from fleet.selectors import agents_summary, pending_filter
from tests.factories import AgentFactory

# desired × observed → what the page says of a change under way ("" for nothing pending).
# Written out in full, not derived from the table it checks.
EXPECTED = {
    ("running", "starting"): "",  # starting as told
    ("running", "running"): "",
    ("running", "paused"): "resuming…",
    ("running", "stopped"): "restarting…",
    ("running", "error"): "",
    ("running", "unresponsive"): "",  # silent: shows unresponsive, not "resuming…"
    ("paused", "starting"): "pausing…",
    ("paused", "running"): "pausing…",
    ("paused", "paused"): "",
    ("paused", "stopped"): "",  # a stopped agent pauses nothing
    ("paused", "error"): "",
    ("paused", "unresponsive"): "",
    ("stopped", "starting"): "stopping…",
    ("stopped", "running"): "stopping…",
    ("stopped", "paused"): "stopping…",
    ("stopped", "stopped"): "",
    ("stopped", "error"): "",
    ("stopped", "unresponsive"): "",
}


def test_the_table_covers_every_desired_and_observed_state():
    assert set(EXPECTED) == {(d, o) for d in DesiredState.values for o in ObservedState.values}
    assert set(states.PENDING) <= set(DesiredState.values)
    assert all(set(observed) <= set(ObservedState.values) for observed in states.PENDING.values())
    assert states.IDLE_STATES.issubset(ObservedState.values)


@pytest.mark.parametrize(("desired", "observed"), sorted(EXPECTED))
def test_a_change_is_pending_only_while_a_live_agent_carries_it_out(desired, observed):
    assert (states.pending_text(desired, observed) or "") == EXPECTED[desired, observed]
    assert states.is_pending(desired, observed) == bool(EXPECTED[desired, observed])


def test_figures_are_stale_when_idle_silent_or_old():
    now = timezone.now()
    fresh, old = now - timedelta(seconds=1), states.fresh_since(now) - timedelta(seconds=1)
    assert not states.metrics_stale("running", fresh, now)
    assert not states.metrics_stale("starting", fresh, now)
    assert not states.metrics_stale("error", fresh, now)
    assert states.metrics_stale("running", old, now)
    assert states.metrics_stale("running", None, now)
    for idle in ("paused", "stopped", "unresponsive"):
        assert states.metrics_stale(idle, fresh, now)


@pytest.mark.django_db
def test_the_filter_the_count_and_the_pages_agree_with_the_table(tenant_a, tenant_b):
    made = {}
    for i, (desired, observed) in enumerate(sorted(EXPECTED)):
        agent = AgentFactory.create(
            tenant=tenant_a, external_id=f"s-{i}", desired_state=desired, observed_state=observed
        )
        made[agent.pk] = bool(EXPECTED[desired, observed])
    AgentFactory.create(tenant=tenant_b, desired_state="paused", observed_state="running")  # another tenant's
    pending = {pk for pk, is_pending in made.items() if is_pending}
    assert len(pending) == 7
    filtered = set(Agent.objects.filter(tenant=tenant_a).filter(pending_filter()).values_list("pk", flat=True))
    assert filtered == pending
    since = timezone.now() - timedelta(minutes=1)
    assert sql.fleet_tiles(tenant_a.pk, since).pending == len(pending)  # plain SQL on PostgreSQL
    assert sql.fleet_tiles.portable(tenant_a.pk, since).pending == len(pending)
    assert agents_summary(tenant_a.pk).pending_count == len(pending)
    assert {a.pk for a in Agent.objects.filter(tenant=tenant_a) if a.pending_text} == pending
