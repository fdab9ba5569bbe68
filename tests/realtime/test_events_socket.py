"""The event socket, frame by frame, against uvicorn serving the console.

Events are published the way services publish them (``hub.publish`` after commit) and
travel through Redis pub/sub to the server's hub, or through the process in the embedded
default.
"""

from __future__ import annotations

import json
import time

import pytest
from django.test import override_settings
from websockets.exceptions import ConnectionClosed, InvalidStatus

from fleet import services as fleet_services
from fleet.models import ObservedState
from realtime import hub
from realtime.sockets import OUTBOX_LIMIT
from tests.conftest import wait_for
from tests.realtime.conftest import StalledClient, events_socket, frame, open_sockets, settings_with, subscribe

pytestmark = pytest.mark.redis


def changed(tenant, agent_id: str = "a-1", state: str = "paused") -> None:
    hub.publish(tenant.pk, "agent.state.changed", {"agent_id": agent_id, "state": state})


def closed_with(ws, code: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    with pytest.raises(ConnectionClosed) as caught:
        while time.monotonic() < deadline:
            ws.recv(timeout=deadline - time.monotonic())
    assert caught.value.rcvd is not None and caught.value.rcvd.code == code, caught.value


# --- subscribe, unsubscribe, events ----------------------------------------------------


def test_a_subscriber_receives_the_events_of_its_topics(server, tenant_a, token_a):
    with events_socket(server, "acme", token=token_a) as ws:
        answer = subscribe(ws, "agent.state.changed", "task.completed")
        assert answer["topics"] == ["agent.state.changed", "task.completed"]
        changed(tenant_a, "crawler-1", "paused")
        event = frame(ws)
    assert event["type"] == "event"
    assert event["topic"] == "agent.state.changed"
    assert event["data"] == {"agent_id": "crawler-1", "state": "paused"}
    assert event["seq"] == answer["seq"] + 1


def test_the_tenant_may_be_named_by_id(server, tenant_a, token_a):
    with events_socket(server, str(tenant_a.pk), token=token_a) as ws:
        subscribe(ws, "agent.state.changed")
        changed(tenant_a)
        assert frame(ws)["topic"] == "agent.state.changed"


def test_events_of_other_topics_are_not_sent(server, tenant_a, token_a):
    with events_socket(server, "acme", token=token_a) as ws:
        subscribe(ws, "task.completed")
        changed(tenant_a)
        hub.publish(tenant_a.pk, "task.completed", {"agent_id": "a-1", "task": "t-9"})
        # Events arrive in order: had the state change been sent, it would come first.
        assert frame(ws)["topic"] == "task.completed"


def test_unsubscribe_stops_a_topic_and_keeps_the_rest(server, tenant_a, token_a):
    with events_socket(server, "acme", token=token_a) as ws:
        subscribe(ws, "agent.state.changed", "control.action")
        ws.send(json.dumps({"type": "unsubscribe", "topics": ["agent.state.changed"]}))
        answer = frame(ws)
        assert answer == {"type": "unsubscribed", "topics": ["control.action"], "seq": answer["seq"]}
        changed(tenant_a)
        hub.publish(tenant_a.pk, "control.action", {"agent_id": "a-1", "action": "pause"})
        assert frame(ws)["topic"] == "control.action"


def test_a_state_reported_by_an_agent_reaches_the_socket(server, tenant_a, token_a, agent_a):
    before = agent_a.observed_state
    with events_socket(server, "acme", token=token_a) as ws:
        subscribe(ws, "agent.state.changed")
        fleet_services.agent_state_report(agent=agent_a, state=ObservedState.PAUSED)
        event = frame(ws)
    assert event["data"]["agent_id"] == str(agent_a.pk)
    assert event["data"]["external_id"] == "worker-1"
    assert event["data"]["state"] == "paused"
    assert event["data"]["previous_state"] == before != "paused"


def test_nothing_is_sent_for_a_rolled_back_change(server, tenant_a, token_a):
    from django.db import transaction

    with events_socket(server, "acme", token=token_a) as ws:
        subscribe(ws, "agent.state.changed", "task.completed")
        with pytest.raises(RuntimeError), transaction.atomic():
            changed(tenant_a, "ghost")
            raise RuntimeError("rolled back")
        hub.publish(tenant_a.pk, "task.completed", {"agent_id": "a-1"})
        assert frame(ws)["topic"] == "task.completed"


# --- pings -----------------------------------------------------------------------------


def test_a_client_that_answers_pings_stays_connected(fast_pings, server, tenant_a, token_a):
    with events_socket(server, "acme", token=token_a) as ws:
        subscribe(ws, "agent.state.changed")
        for _ in range(4):  # four intervals: twice the two allowed misses
            assert frame(ws, timeout=3, skip=()) == {"type": "ping"}
            ws.send('{"type": "pong"}')
        changed(tenant_a)
        assert frame(ws)["topic"] == "agent.state.changed"


def test_a_client_that_misses_two_pings_is_closed(fast_pings, server, tenant_a, token_a):
    with events_socket(server, "acme", token=token_a) as ws:
        subscribe(ws, "agent.state.changed")
        assert frame(ws, timeout=3, skip=()) == {"type": "ping"}
        assert frame(ws, timeout=3, skip=()) == {"type": "ping"}
        closed_with(ws, 4408, timeout=4)


# --- bad frames ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sent, says",
    [
        ("not json", "JSON"),
        ('["subscribe"]', "Unknown frame type"),
        ('{"type": "dance"}', "Unknown frame type"),
        ('{"type": "subscribe"}', "topics"),
        ('{"type": "subscribe", "topics": []}', "topics"),
        ('{"type": "subscribe", "topics": "agent.state.changed"}', "topics"),
        ('{"type": "subscribe", "topics": ["agent.exploded"]}', "agent.exploded"),
        ('{"type": "subscribe", "topics": ["task.completed"], "since": -1}', "since"),
        ('{"type": "subscribe", "topics": ["task.completed"], "since": "1"}', "since"),
        # The input rules of core/inputs.py hold for frames too.
        ('{"type": "subscribe", "topics": ["task.completed"], "colour": 1}', "Unknown field(s) colour"),
        ('{"type": "ping", "x": 1}', "Unknown field(s) x"),
        ('{"type": "subscribe", "topics": ["task.\\u0000"]}', "NUL"),
        ('{"type": "subscribe", "topics": ["\\ud800"]}', "surrogate"),
        ('{"type": "subscribe", "topics": ["task.completed"], "since": 1e999}', "infinity"),
        ('{"type": "subscribe", "topics": ["task.completed"], "since": NaN}', "NaN"),
        ('{"type": {"nested": 1}}', "Unknown frame type"),
        ("[" * 5000, "deeper"),
    ],
)
def test_a_bad_frame_gets_an_error_and_the_socket_stays_open(server, tenant_a, token_a, sent, says):
    with events_socket(server, "acme", token=token_a) as ws:
        ws.send(sent)
        error = frame(ws)
        assert error["type"] == "error"
        assert error["code"] == "E10203"
        assert says in error["message"]
        assert error["recoverable"] is True
        # Nothing was subscribed by the bad frame, and the socket still works.
        answer = subscribe(ws, "task.completed")
        assert answer["topics"] == ["task.completed"]


def test_binary_and_oversized_frames_are_refused_and_the_socket_stays_open(server, tenant_a, token_a):
    with events_socket(server, "acme", token=token_a) as ws:
        ws.send(b"\x00\x01")
        assert "binary" in frame(ws)["message"]
        ws.send(json.dumps({"type": "subscribe", "topics": ["task.completed"], "pad": "x" * 20_000}))
        assert "at most" in frame(ws)["message"]
        subscribe(ws, "task.completed")


# --- who may connect -------------------------------------------------------------------


def test_a_token_of_another_tenant_is_refused_with_e10202(server, tenant_a, token_b):
    with events_socket(server, "acme", token=token_b) as ws:
        error = frame(ws)
        assert error["code"] == "E10202"
        closed_with(ws, 4403)


def test_an_unknown_token_is_refused_with_e10201(server, tenant_a):
    with events_socket(server, "acme", token="l10_" + "x" * 40) as ws:
        assert frame(ws)["code"] == "E10201"
        closed_with(ws, 4401)


def test_a_socket_without_credentials_is_refused(server, tenant_a):
    with events_socket(server, "acme") as ws:
        assert frame(ws)["code"] == "E10201"
        closed_with(ws, 4401)


def test_a_member_signed_in_from_a_page_may_watch_its_tenant(server, tenant_a, viewer_a):
    with events_socket(server, "acme", user=viewer_a) as ws:
        subscribe(ws, "agent.state.changed")
        changed(tenant_a)
        assert frame(ws)["topic"] == "agent.state.changed"


def test_a_signed_in_outsider_is_refused_with_e10202(server, tenant_a, operator_b):
    with events_socket(server, "acme", user=operator_b) as ws:
        assert frame(ws)["code"] == "E10202"
        closed_with(ws, 4403)


def test_a_session_cookie_without_an_origin_does_not_authenticate(server, tenant_a, viewer_a):
    with events_socket(server, "acme", user=viewer_a, origin=None) as ws:
        assert frame(ws)["code"] == "E10201"
        closed_with(ws, 4401)


def test_a_foreign_origin_is_refused_at_the_handshake(server, tenant_a, viewer_a, token_a):
    with pytest.raises(InvalidStatus) as refused:
        events_socket(server, "acme", user=viewer_a, origin="https://evil.example")
    assert refused.value.response.status_code == 403
    # Also with a token: a page elsewhere never gets a socket here.
    with pytest.raises(InvalidStatus):
        events_socket(server, "acme", token=token_a, origin="https://evil.example")


def test_an_unknown_tenant_looks_like_a_foreign_one(server, tenant_a, viewer_a):
    with events_socket(server, "no-such-tenant", user=viewer_a) as ws:
        assert frame(ws)["code"] == "E10202"
        closed_with(ws, 4403)


def test_the_connection_cap_refuses_with_e10204_and_counts_people_only(tenant_a, token_a, transactional_db):
    from tests.conftest import LiveServer, UvicornThread, free_port

    with override_settings(L10=settings_with(L10_WS_MAX_CONNECTIONS="2")):
        thread = UvicornThread(free_port())
        thread.start()
        live = LiveServer("127.0.0.1", thread.port)
        try:
            with events_socket(live, "acme", token=token_a) as first, events_socket(live, "acme", token=token_a):
                subscribe(first, "task.completed")
                with events_socket(live, "acme", token=token_a) as third:
                    error = frame(third)
                    assert error["code"] == "E10204"
                    assert "maximum of 2" in error["message"]
                    closed_with(third, 1013)
                # The first two are untouched.
                hub.publish(tenant_a.pk, "task.completed", {"agent_id": "a-1"})
                assert frame(first)["topic"] == "task.completed"
            # Once they close, there is room again.
            wait_for(lambda: open_sockets() == 0, timeout=5, what="sockets to be released")
            with events_socket(live, "acme", token=token_a) as again:
                subscribe(again, "task.completed")
        finally:
            thread.stop()


# --- isolation and fan-out -------------------------------------------------------------


def test_no_event_crosses_tenants(server, tenant_a, tenant_b, token_a, token_b):
    with events_socket(server, "acme", token=token_a) as a, events_socket(server, "globex", token=token_b) as b:
        subscribe(a, "agent.state.changed")
        subscribe(b, "agent.state.changed")
        changed(tenant_a, "acme-agent")
        changed(tenant_b, "globex-agent")
        assert frame(a)["data"]["agent_id"] == "acme-agent"
        assert frame(b)["data"]["agent_id"] == "globex-agent"


def test_a_deployment_on_another_redis_database_is_not_heard(server, tenant_a, token_a):
    """Pub/sub ignores database numbers; the hub's channels name theirs."""
    with events_socket(server, "acme", token=token_a) as ws:
        subscribe(ws, "task.completed")
        with override_settings(L10=settings_with(L10_REDIS_DB="13")):
            assert hub.send_payloads(tenant_a.pk, [hub.encode("task.completed", {"from": "db 13"})])
        hub.publish(tenant_a.pk, "task.completed", {"from": "ours"})
        assert frame(ws)["data"] == {"from": "ours"}


def test_a_client_that_stops_reading_does_not_delay_the_others(server, tenant_a, token_a):
    """One socket stops reading; large events still reach the other at once, and the
    stalled one is dropped when it falls OUTBOX_LIMIT frames behind."""
    blob = "x" * 60_000
    count = OUTBOX_LIMIT + 200
    stalled = StalledClient(server, "/ws/events?tenant_id=acme", {"Authorization": f"Bearer {token_a}"})
    try:
        stalled.send_text(json.dumps({"type": "subscribe", "topics": ["task.completed"]}))
        with events_socket(server, "acme", token=token_a) as fast:
            subscribe(fast, "task.completed")
            wait_for(lambda: open_sockets() == 2, timeout=5, what="both sockets to register")
            hub.publish_many(tenant_a.pk, "task.completed", ({"n": n, "blob": blob} for n in range(count)))
            # Every event reaches the reading client while the stalled one holds its own
            # queue full: the reader got all of them before the stalled one was dropped.
            received = [frame(fast, timeout=10)["data"]["n"] for _ in range(count)]
            assert received == list(range(count))
            wait_for(lambda: open_sockets() == 1, timeout=5, what="the stalled socket to be dropped")
    finally:
        stalled.close()


# --- coming back -----------------------------------------------------------------------


def test_a_client_coming_back_with_since_gets_what_it_missed(server, tenant_a, token_a):
    with events_socket(server, "acme", token=token_a) as watcher:
        subscribe(watcher, "agent.state.changed")  # keeps the hub watching the tenant
        with events_socket(server, "acme", token=token_a) as first:
            subscribe(first, "agent.state.changed")
            changed(tenant_a, "one")
            last = frame(first)["seq"]
        for name in ("two", "three"):
            changed(tenant_a, name)
        assert frame(watcher)["data"]["agent_id"] == "one"
        assert frame(watcher)["data"]["agent_id"] == "two"
        assert frame(watcher)["data"]["agent_id"] == "three"
        with events_socket(server, "acme", token=token_a) as again:
            subscribe(again, "agent.state.changed", since=last)
            missed = [frame(again), frame(again)]
    assert [m["data"]["agent_id"] for m in missed] == ["two", "three"]
    assert [m["seq"] for m in missed] == [last + 1, last + 2]


def test_a_client_whose_gap_the_hub_cannot_vouch_for_is_told_to_resync(server, tenant_a, token_a):
    changed(tenant_a, "before-anyone-watched")
    changed(tenant_a, "also-before")
    with events_socket(server, "acme", token=token_a) as ws:
        answer = subscribe(ws, "agent.state.changed", since=0)
        assert frame(ws) == {"type": "resync", "seq": answer["seq"]}
        assert answer["seq"] >= 2


def test_the_embedded_default_delivers_in_process(tenant_a, token_a, transactional_db):
    from tests.conftest import LiveServer, UvicornThread, free_port

    embedded = settings_with(L10_REDIS_HOST="")
    assert not embedded.uses_redis
    with override_settings(L10=embedded):
        thread = UvicornThread(free_port())
        thread.start()
        try:
            with events_socket(LiveServer("127.0.0.1", thread.port), "acme", token=token_a) as ws:
                subscribe(ws, "agent.state.changed")
                changed(tenant_a, "local")
                event = frame(ws)
                assert event["data"]["agent_id"] == "local"
        finally:
            thread.stop()
