"""A socket lives as long as its grant: revoking its token, or signing out of its session,
closes it (E10205, then 4401) in whichever process holds it; a token's expiry closes it too.

Real sockets to uvicorn serving the console; revocations made the way people make them
(the token pages, the sign-out button) or by the services, in this process or another.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from core.tokens import hash_token
from realtime import hub
from realtime.hub import Hub
from tenancy import services as tenancy_services
from tenancy.models import ApiToken, PersonalToken, Role, Tenant
from tests.conftest import ROOT, LiveServer, UvicornThread, client_for, free_port, process_env, uvicorn_processes
from tests.factories import MembershipFactory
from tests.realtime.conftest import events_socket, frame, settings_with, subscribe
from tests.realtime.test_hub_redis_down import restart
from tests.realtime.test_live_pages import opened

# The promise: closed within a second of the revocation, measured from when the call that
# revoked returns (on a 2-core machine it takes about a millisecond).
WITHIN = 1.0


def ended(ws: ClientConnection, *, within: float = WITHIN) -> dict[str, Any]:
    """Wait (at most ``within`` s) for the socket to be closed because its grant ended:
    an E10205 error frame, then close code 4401. Returns the error frame."""
    deadline = time.monotonic() + within
    seen: list[dict[str, Any]] = []
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            seen.append(json.loads(ws.recv(timeout=left)))
    except TimeoutError:
        raise AssertionError(f"the socket was still open {within} s after its grant ended; got {seen}") from None
    except ConnectionClosed as closed:
        assert closed.rcvd is not None and closed.rcvd.code == 4401, closed
    errors = [f for f in seen if f.get("type") == "error"]
    assert errors and errors[-1]["code"] == "E10205", seen
    assert errors[-1]["recoverable"] is False
    return errors[-1]


def still_served(ws: ClientConnection) -> None:
    """The socket is open and its consumer still answers: a frame it does not know gets
    E10203 and the socket stays open."""
    ws.send(json.dumps({"type": "no-such-frame"}))
    answer = frame(ws, skip=("ping", "event", "fragments", "resync", "hello", "overview"))
    assert answer["type"] == "error" and answer["code"] == "E10203", answer


def api_token(plain: str) -> ApiToken:
    return ApiToken.objects.get(token_hash=hash_token(plain))


def cookie(client: Client) -> str:
    return f"sessionid={client.cookies['sessionid'].value}"


def page_socket(server: LiveServer, client: Client, view: str = "overview") -> ClientConnection:
    """The live socket of a page opened in ``client``'s session."""
    return connect(
        f"{server.ws_url}/ws/live/acme/?view={view}",
        additional_headers={"Cookie": cookie(client)},
        origin=Origin(server.url),
        open_timeout=10,
    )


def session_events_socket(server: LiveServer, client: Client) -> ClientConnection:
    return connect(
        f"{server.ws_url}/ws/events?tenant_id=acme",
        additional_headers={"Cookie": cookie(client)},
        origin=Origin(server.url),
        open_timeout=10,
    )


def agent_socket(server: LiveServer, plain: str, external_id: str = "worker-1") -> ClientConnection:
    return connect(
        f"{server.ws_url}/ws/agent?external_id={external_id}",
        additional_headers={"Authorization": f"Bearer {plain}"},
        open_timeout=10,
    )


def state_changed(tenant: Tenant) -> None:
    hub.publish(tenant.pk, "agent.state.changed", {"agent_id": "a-1", "state": "paused"})


# --- through Redis, one server process (a thread of this one) --------------------------


@pytest.mark.redis
def test_revoking_a_tenant_token_on_its_page_closes_its_event_sockets_and_no_other(server, tenant_a, admin_a, token_a):
    other = tenancy_services.token_create(tenant=tenant_a, name="dashboards", created_by=admin_a)[1]
    with (
        events_socket(server, "acme", token=token_a) as first,
        events_socket(server, "acme", token=token_a) as second,
        events_socket(server, "acme", token=other) as kept,
    ):
        for ws in (first, second, kept):
            subscribe(ws, "agent.state.changed")
        answer = client_for(admin_a).post(reverse("tenancy:token_revoke", args=["acme", api_token(token_a).pk]))
        assert answer.status_code == 302
        error = ended(first)
        ended(second)
        assert "revoked" in error["message"]
        # Another token of the same tenant keeps its socket, and its events.
        state_changed(tenant_a)
        assert frame(kept)["topic"] == "agent.state.changed"


@pytest.mark.redis
def test_revoking_a_personal_token_on_its_page_closes_its_event_socket(server, tenant_a, viewer_a, operator_a):
    token, plain = tenancy_services.personal_token_create(user=viewer_a, name="script")
    other = tenancy_services.personal_token_create(user=operator_a, name="script")[1]
    with events_socket(server, "acme", token=plain) as ws, events_socket(server, "acme", token=other) as kept:
        subscribe(ws, "agent.state.changed")
        subscribe(kept, "agent.state.changed")
        answer = client_for(viewer_a).post(reverse("personal_token_revoke", args=[token.pk]))
        assert answer.status_code == 302
        ended(ws)
        still_served(kept)
    assert PersonalToken.objects.get(pk=token.pk).revoked_at is not None


@pytest.mark.redis
def test_a_personal_token_watches_only_its_persons_tenants(server, tenant_a, tenant_b, viewer_a):
    plain = tenancy_services.personal_token_create(user=viewer_a, name="script")[1]
    with events_socket(server, "globex", token=plain) as ws:
        assert frame(ws)["code"] == "E10202"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


@pytest.mark.redis
def test_signing_out_closes_that_sessions_sockets_and_only_those(server, tenant_a, viewer_a, operator_a):
    leaving, elsewhere, colleague = client_for(viewer_a), client_for(viewer_a), client_for(operator_a)
    with (
        page_socket(server, leaving) as page,
        session_events_socket(server, leaving) as events,
        page_socket(server, elsewhere) as same_person_other_session,
        page_socket(server, colleague) as other_person,
    ):
        for ws in (page, same_person_other_session, other_person):
            opened(ws)
        subscribe(events, "agent.state.changed")
        assert leaving.post(reverse("logout")).status_code == 302
        error = ended(page)
        ended(events)
        assert "signed out" in error["message"]
        # Signing out ends that session: the person's other session and other people keep theirs.
        still_served(same_person_other_session)
        still_served(other_person)


@pytest.mark.redis
def test_revoking_an_agents_token_closes_its_agent_socket(server, tenant_a, agent_a, token_a):
    with agent_socket(server, token_a) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "control"
        tenancy_services.token_revoke(token=api_token(token_a))
        ended(ws)


@pytest.mark.redis
def test_a_token_that_expires_closes_its_sockets_when_it_does(server, tenant_a, agent_a, token_a):
    expires = timezone.now() + timedelta(seconds=2)
    ApiToken.objects.filter(token_hash=hash_token(token_a)).update(expires_at=expires)
    with events_socket(server, "acme", token=token_a) as events, agent_socket(server, token_a) as agent:
        subscribe(events, "agent.state.changed")
        assert json.loads(agent.recv(timeout=5))["type"] == "control"
        left = (expires - timezone.now()).total_seconds()
        assert left > 0, "the sockets took longer to open than the token had to live"
        assert "expired" in ended(events, within=left + WITHIN)["message"]
        ended(agent)
    assert timezone.now() >= expires


# --- across processes --------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.postgres
def test_a_revocation_made_in_another_process_closes_a_socket_in_this_one(server, tenant_a, token_a):
    token = api_token(token_a)
    script = (
        "import django; django.setup()\n"
        "from tenancy.models import ApiToken\n"
        "from tenancy.services import token_revoke\n"
        f"assert token_revoke(token=ApiToken.objects.get(pk={token.pk}))\n"
    )
    with events_socket(server, "acme", token=token_a) as ws:
        subscribe(ws, "agent.state.changed")
        subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=process_env(), check=True, timeout=60)
        ended(ws)


@pytest.mark.redis
@pytest.mark.postgres
def test_a_revocation_reaches_the_sockets_of_every_server_process(transactional_db, tenant_a, viewer_a, token_a):
    token, plain = tenancy_services.personal_token_create(user=viewer_a, name="script")
    with (
        uvicorn_processes(2) as (one, two),
        events_socket(one, "acme", token=token_a) as first,
        events_socket(two, "acme", token=token_a) as second,
        events_socket(two, "acme", token=plain) as kept,
    ):
        for ws in (first, second, kept):
            subscribe(ws, "agent.state.changed")
        tenancy_services.token_revoke(token=api_token(token_a))
        ended(first)
        ended(second)
        still_served(kept)
        tenancy_services.personal_token_revoke(token=token)
        ended(kept)


@pytest.mark.redis
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_grants_that_ended_while_the_hub_had_lost_redis_close_their_sockets_when_it_is_back(
    private_redis, tenant_a, viewer_a, token_a
):
    on_private = settings_with(L10_REDIS_PORT=str(private_redis.port), L10_REDIS_DB="0")
    leaving, staying = client_for(viewer_a), client_for(viewer_a)
    personal, personal_plain = tenancy_services.personal_token_create(user=viewer_a, name="script")
    # Another process revokes the token and ends a session (as an admin clearing it would)
    # while Redis is down: its word reaches no hub, and is lost.
    script = (
        "import django; django.setup()\n"
        "from django.contrib.sessions.backends.db import SessionStore\n"
        "from tenancy.models import ApiToken\n"
        "from tenancy.services import token_revoke\n"
        f"token_revoke(token=ApiToken.objects.get(pk={api_token(token_a).pk}))\n"
        f"SessionStore({leaving.session.session_key!r}).delete()\n"
    )
    revived = None
    with override_settings(L10=on_private):
        thread = UvicornThread(free_port())
        thread.start()
        try:
            server = LiveServer("127.0.0.1", thread.port)
            with (
                events_socket(server, "acme", token=token_a) as events,
                events_socket(server, "acme", token=personal_plain) as here,
                page_socket(server, leaving) as page,
                page_socket(server, staying) as kept,
            ):
                subscribe(events, "agent.state.changed")
                subscribe(here, "agent.state.changed")
                opened(page)
                opened(kept)
                private_redis.kill()
                # Revoked in this process: the publish fails, and this process's hubs are told directly.
                tenancy_services.personal_token_revoke(token=personal)
                ended(here)
                env = process_env(L10_REDIS_PORT=str(private_redis.port), L10_REDIS_DB="0")
                subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, timeout=60)
                revived = restart(private_redis.port)
                # The hub reconnects (back-off of at most 5 s) and its sockets read their grants again.
                assert "revoked" in ended(events, within=15)["message"]
                ended(page, within=5)
                still_served(kept)
        finally:
            thread.stop()
            if revived is not None:
                revived.kill()
                revived.wait(timeout=10)


# --- the embedded default: the hub fed inside the process ---------------------------------


@pytest.mark.django_db(transaction=True)
def test_in_the_embedded_default_revoking_and_signing_out_close_sockets(tenant_a, viewer_a, agent_a, token_a):
    with override_settings(L10=settings_with(L10_REDIS_HOST="")):  # no Redis: the in-process hub
        thread = UvicornThread(free_port())
        thread.start()
        try:
            server = LiveServer("127.0.0.1", thread.port)
            session = client_for(viewer_a)
            with (
                events_socket(server, "acme", token=token_a) as events,
                agent_socket(server, token_a) as agent,
                page_socket(server, session) as page,
            ):
                subscribe(events, "agent.state.changed")
                assert json.loads(agent.recv(timeout=5))["type"] == "control"
                opened(page)
                tenancy_services.token_revoke(token=api_token(token_a))
                ended(events)
                ended(agent)
                still_served(page)
                session.post(reverse("logout"))
                ended(page)
        finally:
            thread.stop()


# --- the hub's own bookkeeping -------------------------------------------------------------


class Holder:
    """A socket as the hub sees it: its principals, and what it was told."""

    def __init__(self, *principals: str) -> None:
        self.principals = principals
        self.reasons: list[str] = []

    def end_access(self, reason: str) -> None:
        self.reasons.append(reason)

    def recheck(self) -> None:
        self.reasons.append("recheck")


def revocation(*principals: str, reason: str = "revoked") -> str:
    return json.dumps({"type": "revoke", "principals": list(principals), "reason": reason})


def test_the_hub_ends_the_sockets_of_a_revoked_principal_only():
    hub_ = Hub(asyncio.new_event_loop())
    token, session, both = Holder("api-token:1"), Holder("session:7:ab"), Holder("api-token:1", "session:7:ab")
    for socket in (token, session, both):
        assert hub_.admit(socket)
    hub_.control(revocation("session:7:ab", reason="signed_out"))
    assert (token.reasons, session.reasons, both.reasons) == ([], ["signed_out"], ["signed_out"])


def test_a_socket_that_registers_after_its_grant_ended_is_refused():
    # It read its token just before the revocation committed, and registers just after the
    # hub heard of it: the hub remembers, and turns it away.
    hub_ = Hub(asyncio.new_event_loop())
    hub_.control(revocation("api-token:1"))
    assert not hub_.admit(Holder("api-token:1"))
    assert "api-token:1" not in hub_.granted
    assert hub_.admit(Holder("api-token:2"))


def test_a_dismissed_socket_is_not_told_and_a_malformed_message_is_dropped():
    hub_ = Hub(asyncio.new_event_loop())
    gone = Holder("api-token:3")
    hub_.admit(gone)
    hub_.dismiss(gone)
    for payload in ("not json", '{"type": "revoke"}', '{"type": "other", "principals": ["api-token:3"]}'):
        hub_.control(payload)
    hub_.control(revocation("api-token:3"))
    assert gone.reasons == [] and hub_.granted == {}


@pytest.mark.redis
def test_removing_a_member_closes_their_sockets_of_that_tenant_and_only_those(
    server, tenant_a, tenant_b, admin_a, viewer_a, operator_a
):
    MembershipFactory.create(user=viewer_a, tenant=tenant_b, role=Role.VIEWER)
    leaving, colleague = client_for(viewer_a), client_for(operator_a)
    with (
        page_socket(server, leaving) as page,
        session_events_socket(server, leaving) as events,
        connect(
            f"{server.ws_url}/ws/live/globex/?view=overview",
            additional_headers={"Cookie": cookie(leaving)},
            origin=Origin(server.url),
            open_timeout=10,
        ) as other_tenant,
        page_socket(server, colleague) as other_person,
    ):
        for ws in (page, other_tenant, other_person):
            opened(ws)
        subscribe(events, "agent.state.changed")
        removed = client_for(admin_a).post(reverse("members:remove", args=["acme", viewer_a.pk]))
        assert removed.status_code == 302
        ended(page)
        ended(events)
        # Their session and their other tenant stay; so does everyone else.
        still_served(other_tenant)
        still_served(other_person)
