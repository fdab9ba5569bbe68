"""The pages' socket, ``/ws/live/<slug>/``: the partials the views render, swapped by id."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from django.test import override_settings
from django.utils import timezone
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from control.models import Batch
from dashboard import live
from events.services import NewEvent, events_record
from fleet import services as fleet_services
from fleet.models import DesiredState, ObservedState
from ingest.schemas import Metrics
from realtime import hub
from tests.conftest import LiveServer, client_for
from tests.dashboard.conftest import live_agent
from tests.realtime.conftest import events_socket, frame, settings_with, subscribe
from tests.realtime.test_events_socket import closed_with

pytestmark = pytest.mark.redis


def live_socket(
    server: LiveServer, user, query: str, *, slug: str = "acme", origin: str | None = "same"
) -> ClientConnection:
    headers = {"Cookie": f"sessionid={client_for(user).cookies['sessionid'].value}"} if user else {}
    return connect(
        f"{server.ws_url}/ws/live/{slug}/?{query}",
        additional_headers=headers,
        origin=server.url if origin == "same" else origin,  # type: ignore[arg-type]
        open_timeout=10,
    )


def watching(ws: ClientConnection, agents: list[str]) -> None:
    """Say which rows the page shows, and wait until the server has taken it: frames are
    handled in order, so the answer to a frame it refuses comes after (a change before it
    would rightly ask the page to resync instead)."""
    ws.send(json.dumps({"type": "watch", "agents": agents}))
    ws.send(json.dumps({"type": "no-such-frame"}))
    assert frame(ws)["code"] == "E10203"


def opened(ws: ClientConnection) -> dict:
    first = frame(ws)
    assert first["type"] in ("hello", "resync"), first
    return first


@pytest.fixture
def crawlers(tenant_a):
    return [live_agent(tenant_a, f"crawler-{n}", cpu=10.0 * n) for n in (1, 2, 3)]


def test_the_list_gets_the_row_of_a_shown_agent_that_changed(server, viewer_a, crawlers):
    shown, hidden = crawlers[0], crawlers[1]
    with live_socket(server, viewer_a, "view=agents") as ws:
        opened(ws)
        watching(ws, [str(shown.pk)])
        fleet_services.agent_state_report(agent=hidden, state=ObservedState.PAUSED)
        fleet_services.agent_state_report(agent=shown, state=ObservedState.PAUSED)
        update = frame(ws)
    assert update["type"] == "fragments"
    assert update["html"].startswith(f'<tr id="agent-{shown.pk}"')
    assert "state-paused" in update["html"]
    assert f"agent-{hidden.pk}" not in update["html"]


def test_a_heartbeat_refreshes_a_shown_row_with_its_figures(server, viewer_a, tenant_a, crawlers):
    agent = crawlers[0]
    with live_socket(server, viewer_a, "view=agents") as ws:
        opened(ws)
        watching(ws, [str(agent.pk)])
        reading = Metrics.model_validate({"cpu_percent": 77.5})
        fleet_services.agent_heartbeat(tenant=tenant_a, external_id=agent.external_id, state="running", reading=reading)
        update = frame(ws)
    assert "77.5" in update["html"]


def overview_frame(ws: ClientConnection, until=lambda f: True, *, timeout: float = 8.0) -> dict:
    """The next overview frame for which ``until`` holds (frames before it are passed over)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        found = frame(ws, timeout=left, skip=("ping", "hello", "resync", "fragments"))
        if found["type"] == "overview" and until(found):
            return found
    raise AssertionError(f"no such overview frame within {timeout} s")


@pytest.fixture
def quick_overview() -> Iterator[None]:
    with override_settings(L10=settings_with(L10_LIVE_OVERVIEW_INTERVAL="1")):
        yield


def test_the_overview_gets_fresh_tiles_and_the_charts_newest_end_every_interval(
    quick_overview, server, viewer_a, tenant_a, crawlers
):
    with live_socket(server, viewer_a, "view=overview") as ws:
        opened(ws)
        first = overview_frame(ws)  # at once: the page may have been served from the cache
        assert first["html"].startswith('<div id="overview-tiles"')
        assert 'data-testid="count-paused">0<' in first["html"]
        assert sorted(first["tails"], key=int) == ["60", "300", "1800"]
        minute = first["tails"]["60"]
        assert set(minute["charts"]) == {"cpu", "memory", "tokens", "requests", "latency"}
        assert minute["x"][1] - minute["x"][0] == 60

        # A heartbeat changes no state, and its figures still show in a later frame (top CPU).
        assert "99.5" not in first["html"]
        reading = Metrics.model_validate({"cpu_percent": 99.5})
        fleet_services.agent_heartbeat(
            tenant=tenant_a, external_id=crawlers[0].external_id, state="running", reading=reading
        )
        overview_frame(ws, lambda f: "99.5" in f["html"])
        fleet_services.agent_state_report(agent=crawlers[1], state=ObservedState.PAUSED)
        update = overview_frame(ws, lambda f: 'data-testid="count-paused">1<' in f["html"])
    assert 'data-testid="count-running">2<' in update["html"]


def test_every_open_overview_of_a_tenant_gets_the_same_render(quick_overview, server, viewer_a, admin_a, crawlers):
    with live_socket(server, viewer_a, "view=overview") as one, live_socket(server, admin_a, "view=overview") as two:
        opened(one), opened(two)
        # Page one was open first, so whatever page two gets, one gets too. Each interval's
        # frame is one read and one render (its time to the microsecond) handed to both:
        # the same frame, not one of its own.
        shown = overview_frame(two)
        assert overview_frame(one, lambda f: f == shown, timeout=4.0) == shown
        shown = overview_frame(two)
        assert overview_frame(one) == shown


def test_the_overview_ticker_stops_with_the_last_overview_page(quick_overview, server, viewer_a, tenant_a, crawlers):
    with live_socket(server, viewer_a, "view=agents") as listing:
        opened(listing)
        with live_socket(server, viewer_a, "view=overview") as ws:
            opened(ws)
            overview_frame(ws)
            running = [t for t in live._tenants.values() if t.tenant_id == tenant_a.pk]
            assert len(running) == 1 and running[0].ticker is not None
        deadline = time.monotonic() + 5
        while running[0].ticker is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running[0].ticker is None  # the list page is still open; nothing renders tiles for it
        listing.send(json.dumps({"type": "watch", "agents": []}))
        with pytest.raises(TimeoutError):
            frame(listing, timeout=2.5, skip=("ping",))  # no overview frames reach a list page


def test_the_detail_gets_its_own_agents_summary_only(server, viewer_a, crawlers):
    mine, other = crawlers[0], crawlers[1]
    with live_socket(server, viewer_a, f"view=agent&agent={mine.pk}") as ws:
        opened(ws)
        fleet_services.agent_desired_state_set(agent_id=other.pk, state=DesiredState.PAUSED, actor=None)
        fleet_services.agent_desired_state_set(agent_id=mine.pk, state=DesiredState.PAUSED, actor=viewer_a)
        got = {f["type"]: f for f in (frame(ws), frame(ws))}
    # Its summary, and a word to read its control actions card again.
    assert got["refresh"]["parts"] == ["agent-events", "agent-controls"]
    update = got["fragments"]
    assert update["html"].startswith('<section id="agent-summary"')
    assert 'data-testid="desired-state">Paused<' in update["html"]
    assert "pausing…" in update["html"]
    assert "by vera" in update["html"]


def test_a_page_rendered_before_missed_events_is_told_to_resync(server, viewer_a, tenant_a, crawlers):
    rendered_at = hub.current_seq(tenant_a.pk)
    assert rendered_at is not None
    with live_socket(server, viewer_a, f"view=overview&since={rendered_at}") as ws:
        assert frame(ws) == {"type": "hello", "seq": rendered_at}
    fleet_services.agent_state_report(agent=crawlers[0], state=ObservedState.PAUSED)
    # The change, its event in the store and the word that the agent has new events.
    assert hub.current_seq(tenant_a.pk) == rendered_at + 3
    with live_socket(server, viewer_a, f"view=overview&since={rendered_at}") as ws:
        assert frame(ws) == {"type": "resync", "seq": rendered_at + 3}


def test_an_outsider_is_refused(server, operator_b, crawlers):
    with live_socket(server, operator_b, "view=overview") as ws:
        assert frame(ws)["code"] == "E10202"
        closed_with(ws, 4403)


def test_an_agent_of_another_tenant_cannot_be_watched_in_detail(server, viewer_a, agent_b):
    with live_socket(server, viewer_a, f"view=agent&agent={agent_b.pk}") as ws:
        assert frame(ws)["code"] == "E10202"
        closed_with(ws, 4403)


def test_watching_another_tenants_agent_shows_nothing_of_it(server, viewer_a, agent_b, crawlers):
    with live_socket(server, viewer_a, "view=agents") as ws:
        opened(ws)
        watching(ws, [str(agent_b.pk), str(crawlers[0].pk)])
        fleet_services.agent_state_report(agent=agent_b, state=ObservedState.PAUSED)
        fleet_services.agent_state_report(agent=crawlers[0], state=ObservedState.PAUSED)
        update = frame(ws)
    assert str(agent_b.pk) not in update["html"]
    assert f"agent-{crawlers[0].pk}" in update["html"]


def test_an_anonymous_socket_is_refused(server, crawlers):
    with live_socket(server, None, "view=overview") as ws:
        assert frame(ws)["code"] == "E10201"
        closed_with(ws, 4401)


@pytest.mark.parametrize("origin", [None, "https://evil.example"])
def test_a_page_socket_needs_our_origin(server, viewer_a, origin):
    with pytest.raises(InvalidStatus) as refused:
        live_socket(server, viewer_a, "view=overview", origin=origin)
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("query", ["view=charts", "view=agent&agent=not-an-id", "view=batch&batch=", "view=batch"])
def test_a_socket_for_no_known_view_is_refused_as_a_bad_request(server, viewer_a, crawlers, query):
    with live_socket(server, viewer_a, query) as ws:
        assert frame(ws)["code"] == "E10203"
        closed_with(ws, 4400)


def test_a_bad_watch_frame_gets_an_error_and_the_socket_stays_open(server, viewer_a, crawlers):
    with live_socket(server, viewer_a, "view=agents") as ws:
        opened(ws)
        ws.send(json.dumps({"type": "watch", "agents": ["not-an-id"]}))
        assert frame(ws)["code"] == "E10203"
        watching(ws, [str(crawlers[0].pk)])
        fleet_services.agent_state_report(agent=crawlers[0], state=ObservedState.PAUSED)
        assert frame(ws)["type"] == "fragments"


def _batch(tenant) -> Batch:
    return Batch.objects.create(tenant=tenant, action="pause", created_at=timezone.now())


def test_a_batch_page_is_told_to_read_its_progress_again_at_each_step_of_its_own_batch(
    server, viewer_a, tenant_a, crawlers
):
    mine, other = _batch(tenant_a), _batch(tenant_a)
    with live_socket(server, viewer_a, f"view=batch&batch={mine.pk}") as ws:
        opened(ws)
        hub.publish(tenant_a.pk, "control.batch", {"batch_id": str(other.pk), "done": 1})
        fleet_services.agent_state_report(agent=crawlers[0], state=ObservedState.PAUSED)
        hub.publish(tenant_a.pk, "control.batch", {"batch_id": str(mine.pk), "done": 1})
        told = frame(ws)
        assert told["type"] == "refresh" and told["seq"] == hub.current_seq(tenant_a.pk)
        with pytest.raises(TimeoutError):
            frame(ws, timeout=1.0)  # nothing else: the other batch and the agent are not this page's


def test_a_batch_of_another_tenant_cannot_be_followed(server, viewer_a, tenant_b):
    with live_socket(server, viewer_a, f"view=batch&batch={_batch(tenant_b).pk}") as ws:
        assert frame(ws)["code"] == "E10202"
        closed_with(ws, 4403)


def test_the_detail_reads_its_cards_again_after_news_of_its_agent_but_not_after_a_heartbeat(
    server, viewer_a, tenant_a, crawlers
):
    mine, other = crawlers[0], crawlers[1]

    def failure(agent) -> NewEvent:
        return NewEvent(type="task.failed", occurred_at=timezone.now(), agent_id=agent.pk, severity="error")

    with live_socket(server, viewer_a, f"view=agent&agent={mine.pk}") as ws:
        opened(ws)
        reading = Metrics.model_validate({"cpu_percent": 12.5})
        fleet_services.agent_heartbeat(tenant=tenant_a, external_id=mine.external_id, state="running", reading=reading)
        assert frame(ws)["type"] == "fragments"  # its summary: a heartbeat adds no event
        events_record(tenant_id=tenant_a.pk, events=[failure(other)])
        events_record(tenant_id=tenant_a.pk, events=[failure(mine), failure(mine)])
        told = frame(ws)
        assert told == {
            "type": "refresh",
            "seq": hub.current_seq(tenant_a.pk),
            "parts": ["agent-events", "agent-controls"],
        }
        with pytest.raises(TimeoutError):
            frame(ws, timeout=1.0)  # one word for the batch; nothing for the other agent


def test_news_of_an_agents_events_is_one_event_per_agent_and_batch_with_its_worst_severity(
    server, viewer_a, tenant_a, crawlers
):
    first, second = crawlers[0], crawlers[1]
    with events_socket(server, "acme", user=viewer_a) as ws:
        subscribe(ws, "agent.events")
        events_record(
            tenant_id=tenant_a.pk,
            events=[
                NewEvent(type="task.started", occurred_at=timezone.now(), agent_id=first.pk),
                NewEvent(type="task.failed", occurred_at=timezone.now(), agent_id=first.pk, severity="error"),
                NewEvent(type="disk.low", occurred_at=timezone.now(), agent_id=second.pk, severity="warning"),
                NewEvent(type="tenant.note", occurred_at=timezone.now()),  # of no agent: no news
            ],
        )
        told = {e["data"]["agent_id"]: e["data"] for e in (frame(ws), frame(ws))}
        assert told == {
            str(first.pk): {"agent_id": str(first.pk), "count": 2, "worst": "error"},
            str(second.pk): {"agent_id": str(second.pk), "count": 1, "worst": "warning"},
        }
        with pytest.raises(TimeoutError):
            frame(ws, timeout=1.0)


def test_every_page_hears_the_alert_badge_and_the_alerts_page_reads_its_rows_again(
    server, viewer_a, operator_a, tenant_a, crawlers
):
    from alerts import services as alert_services
    from alerts.models import Alert
    from audit.services import Actor

    rule = alert_services.default_rules(tenant_a)[0]
    alert = Alert.objects.create(
        tenant=tenant_a, rule=rule, agent=crawlers[0], fingerprint="agent:x", state="firing", severity="critical",
        message="m", started_at=timezone.now(), fired_at=timezone.now(), evaluated_at=timezone.now(),
    )  # fmt: skip
    with live_socket(server, viewer_a, "view=agents") as listing, live_socket(server, viewer_a, "view=alerts") as page:
        opened(listing), opened(page)
        # On connecting, a page whose badge is not 0 is told its count (its HTML leaves it out).
        assert frame(listing)["count"] == 1 and frame(page)["count"] == 1
        alert_services.alert_acknowledge(alert_id=alert.pk, actor=Actor(user=operator_a))
        assert frame(listing) == {"type": "badge", "seq": hub.current_seq(tenant_a.pk), "count": 0}
        got = [frame(page), frame(page)]
    assert got[0]["type"] == "badge" and got[0]["count"] == 0
    assert got[1] == {"type": "refresh", "seq": got[0]["seq"], "parts": ["alert-rows"]}


def _spend(agent, tokens: int = 1_000_000) -> None:
    from costs.services import NewUsage, usage_record

    usage_record(tenant_id=agent.tenant_id, records=[NewUsage(agent.pk, "m", timezone.now(), tokens, 0)])


@pytest.fixture
def priced(admin_a):
    from datetime import UTC, datetime
    from decimal import Decimal

    from audit.services import Actor
    from costs.services import PriceSpec, price_add

    price_add(
        spec=PriceSpec("m", Decimal("1"), Decimal("0"), datetime(2026, 1, 1, tzinfo=UTC)), tenant_id=None,
        actor=Actor(user=admin_a),
    )  # fmt: skip


@pytest.fixture
def every_usage_said(monkeypatch):
    from costs import services as cost_services

    monkeypatch.setattr(cost_services, "SPENT_EVERY", 0.0)
    monkeypatch.setattr(cost_services, "_spent", {})


def test_an_agents_page_renders_its_quota_countdown_and_reads_its_costs_again_when_it_spends(
    server, viewer_a, crawlers, priced, every_usage_said
):
    mine, other = crawlers[0], crawlers[1]
    mine.quotas = {"cost_usd": {"day": 1_000}}
    mine.save()
    with live_socket(server, viewer_a, f"view=agent&agent={mine.pk}") as ws:
        opened(ws)
        _spend(other)  # another agent's spending: not this page's news
        _spend(mine, 2_000_000)  # $2.00: $8.00 left at $2.00 an hour
        got = {f["type"]: f for f in (frame(ws), frame(ws))}
        with pytest.raises(TimeoutError):
            frame(ws, timeout=1.0)  # one summary and one word for the costs card, not one per agent that spent
    assert got["refresh"]["parts"] == ["agent-costs"]
    update = got["fragments"]
    assert update["html"].startswith('<section id="agent-summary"')
    assert "$2.00 / $10.00" in update["html"]
    assert "$2.00/h: runs out in ~4 h 0 min at the current rate" in update["html"] or (
        "$2.00/h: lasts the day at the current rate" in update["html"]  # after 20:00 UTC, midnight comes first
    )


def test_the_cost_page_reads_its_budgets_again_after_usage_at_most_every_few_seconds(
    server, viewer_a, crawlers, priced, every_usage_said, monkeypatch
):
    monkeypatch.setattr(live, "COSTS_EVERY", 1.0)
    with live_socket(server, viewer_a, "view=costs") as ws:
        opened(ws)
        _spend(crawlers[0])
        first = frame(ws)
        for agent in crawlers:  # three more while the page was just told: one word for them all
            _spend(agent)
        second = frame(ws, timeout=10.0)
        with pytest.raises(TimeoutError):
            frame(ws, timeout=1.5)
    assert first["type"] == second["type"] == "refresh"
    assert first["parts"] == second["parts"] == ["cost-budgets"]
    assert second["seq"] > first["seq"]
