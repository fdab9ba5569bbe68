"""The dashboard's cache: scoped by tenant, invalidated by state changes, optional."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.test import override_settings

from core import tenant_cache
from fleet import services
from fleet.models import Agent, DesiredState
from ingest.schemas import Metrics
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


def count(page: str, state: str) -> int:
    match = re.search(rf'data-testid="count-{state}">(\d+)<', page)
    assert match, f"no {state} count"
    return int(match.group(1))


def test_keys_carry_the_tenant_so_a_page_of_a_is_never_served_to_b(viewer_a, operator_b, acme_fleet, globex_fleet):
    a_page = client_for(viewer_a).get("/t/acme/").content.decode()
    assert count(a_page, "running") == 4
    # Tenant A's overview is now cached; tenant B's member gets B's own numbers.
    b_page = client_for(operator_b).get("/t/globex/").content.decode()
    assert count(b_page, "running") == 0 and count(b_page, "paused") == 3
    a_key = tenant_cache.key("overview", acme_fleet[0].tenant_id)
    b_key = tenant_cache.key("overview", globex_fleet[0].tenant_id)
    assert a_key != b_key
    # The entries are each tenant's rendered tiles: links and counts of that tenant only.
    a_entry, b_entry = cache.get(a_key), cache.get(b_key)
    assert "/t/acme/agents/" in a_entry and "/t/globex/" not in a_entry
    assert "/t/globex/agents/" in b_entry and "/t/acme/" not in b_entry
    assert count(a_entry, "running") == 4 and count(b_entry, "paused") == 3


def test_a_state_change_shows_at_once_within_the_ttl(
    viewer_a, acme_fleet, tenant_a, django_capture_on_commit_callbacks
):
    client = client_for(viewer_a)
    assert count(client.get("/t/acme/").content.decode(), "paused") == 0
    # A metrics-only heartbeat does not invalidate: the cached page is still served...
    with django_capture_on_commit_callbacks(execute=True):
        services.agent_heartbeat(
            tenant=tenant_a,
            external_id="crawler-1",
            state="running",
            reading=Metrics(cpu_percent=77.0),
        )
    cached = client.get("/t/acme/").content.decode()
    assert "77.0" not in cached[cached.index("Top CPU") : cached.index("Top error rate")]
    # ...but the agent confirming a pause does, within the 120 s TTL.
    with django_capture_on_commit_callbacks(execute=True):
        services.agent_heartbeat(tenant=tenant_a, external_id="planner-1", state="paused")
    fresh = client.get("/t/acme/").content.decode()
    assert count(fresh, "paused") == 1 and count(fresh, "pending") == 0


def test_a_desired_change_invalidates_the_list_and_the_detail(
    operator_a, acme_fleet, django_capture_on_commit_callbacks
):
    client = client_for(operator_a)
    crawler = acme_fleet[0]
    assert "Paused" not in client.get(f"/t/acme/agents/{crawler.pk}/").content.decode().split("Observed")[0]
    client.get("/t/acme/agents/")
    with django_capture_on_commit_callbacks(execute=True):
        services.agent_desired_state_set(agent_id=crawler.pk, state=DesiredState.PAUSED, actor=operator_a)
    detail = client.get(f"/t/acme/agents/{crawler.pk}/").content.decode()
    assert 'data-testid="desired-state">Paused<' in detail
    assert "pausing…" in client.get("/t/acme/agents/").content.decode()


def test_pages_render_without_a_cache_at_all(viewer_a, acme_fleet):
    with override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}):
        page = client_for(viewer_a).get("/t/acme/").content.decode()
    assert count(page, "running") == 4


def test_a_control_action_leaves_the_charts_cached(
    operator_a, acme_fleet, tenant_a, django_capture_on_commit_callbacks
):
    # Charts are drawn from metric rows only: a pause changes nothing they show, so it must
    # not make the next overview read the minute rows again (only their TTL ends them).
    client = client_for(operator_a)
    pending = count(client.get("/t/acme/").content.decode(), "pending")
    chart_key = tenant_cache.key("fleet-charts", tenant_a.pk, "1h", gen=tenant_cache.METRICS_GENERATION)
    assert cache.get(chart_key) is not None
    with django_capture_on_commit_callbacks(execute=True):
        services.agent_desired_state_set(agent_id=acme_fleet[0].pk, state=DesiredState.PAUSED, actor=operator_a)
    assert cache.get(chart_key) is not None
    page = client.get("/t/acme/").content.decode()
    assert count(page, "pending") == pending + 1  # the tiles were invalidated and read again
    # The agent's own charts stay cached too.
    client.get(f"/t/acme/agents/{acme_fleet[0].pk}/")
    agent_key = tenant_cache.key(
        "agent-charts-html", tenant_a.pk, acme_fleet[0].pk, "1h", gen=tenant_cache.METRICS_GENERATION
    )
    assert cache.get(agent_key) is not None
    with django_capture_on_commit_callbacks(execute=True):
        services.agent_desired_state_set(agent_id=acme_fleet[0].pk, state=DesiredState.RUNNING, actor=operator_a)
    assert cache.get(agent_key) is not None


def test_a_cached_list_tells_its_times_from_now_not_from_when_it_was_cached(viewer_a, acme_fleet):
    client = client_for(viewer_a)
    now = max(agent.last_heartbeat_at for agent in acme_fleet) + timedelta(milliseconds=500)  # they differ by µs
    with time_machine.travel(now + timedelta(seconds=5), tick=False):
        first = client.get("/t/acme/agents/").content.decode()
    assert first.count(">5 s ago</time>") == len(acme_fleet)
    # A write that does not invalidate (as a heartbeat's metrics): the next page is the cached one...
    Agent.objects.filter(pk=acme_fleet[0].pk).update(name="Renamed Quietly")
    with time_machine.travel(now + timedelta(seconds=55), tick=False):
        later = client.get("/t/acme/agents/").content.decode()
    assert "Renamed Quietly" not in later and acme_fleet[0].name in later
    # ...with each time told from now, not from when its rows were rendered.
    assert later.count(">55 s ago</time>") == len(acme_fleet) and ">5 s ago<" not in later
