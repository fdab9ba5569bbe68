"""Token scopes and expiry (docs/api.md, "Token scopes and expiry"), and how token pages
are served: chosen on the pages, enforced by every API and socket, never cached."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.test import Client
from django.utils import timezone
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from fleet.models import Agent
from tenancy.models import ApiToken, PersonalToken
from tenancy.services import personal_token_create, token_create
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


def ingest(token: str) -> Any:
    return Client().post(
        "/api/v1/ingest/register",
        json.dumps({"external_id": "worker-9"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def control(token: str, agent: Agent) -> Any:
    return Client().post(
        f"/api/v1/agents/{agent.pk}/pause",
        "{}",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def code(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


# --- what a token may do ----------------------------------------------------------------


def test_tokens_made_without_a_choice_keep_what_their_kind_always_could(tenant_a, operator_a, agent_a):
    tenant_token, plain = token_create(tenant=tenant_a, name="fleet", created_by=None)
    person_token, personal = personal_token_create(user=operator_a, name="cli")
    assert (tenant_token.scopes, tenant_token.expires_at) == ("ingest read", None)
    assert (person_token.scopes, person_token.expires_at) == ("control read", None)
    assert ingest(plain).status_code == 201
    assert control(personal, agent_a).status_code == 200


def test_a_tenant_token_without_ingest_is_refused_by_the_ingest_api_with_e10008(tenant_a):
    _, plain = token_create(tenant=tenant_a, name="watcher", created_by=None, scopes=["read"])
    response = ingest(plain)
    assert code(response) == (403, "E10008")
    assert "'ingest' scope" in response.json()["error"]["message"]
    assert not Agent.objects.exists()


def test_a_personal_token_without_control_is_refused_by_the_control_api_with_e10008(operator_a, agent_a):
    _, plain = personal_token_create(user=operator_a, name="read-only", scopes=["read"])
    assert code(control(plain, agent_a)) == (403, "E10008")
    assert Agent.objects.get().desired_state == "running"


def test_an_expired_token_is_refused_with_e10007_and_works_until_then(tenant_a, operator_a, agent_a):
    _, tenant_plain = token_create(tenant=tenant_a, name="short", created_by=None, expires_in_days=1)
    _, personal_plain = personal_token_create(user=operator_a, name="short", expires_in_days=1)
    with time_machine.travel(timezone.now() + timedelta(hours=23), tick=False):
        assert ingest(tenant_plain).status_code == 201
        assert control(personal_plain, agent_a).status_code == 200
    with time_machine.travel(timezone.now() + timedelta(days=1, seconds=1), tick=False):
        assert code(ingest(tenant_plain)) == (401, "E10007")
        assert code(control(personal_plain, agent_a)) == (401, "E10007")


def test_a_revoked_token_says_revoked_even_when_it_has_also_expired(tenant_a):
    token, plain = token_create(tenant=tenant_a, name="old", created_by=None, expires_in_days=1)
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
    with time_machine.travel(timezone.now() + timedelta(days=2), tick=False):
        assert code(ingest(plain)) == (401, "E10003")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"scopes": ["control"]}, "Unknown scope control"),
        ({"scopes": []}, "Choose at least one scope"),
        ({"expires_in_days": 0}, "Expiry must be 1 to 3650 days"),
        ({"expires_in_days": 3651}, "Expiry must be 1 to 3650 days"),
    ],
)
def test_a_tenant_token_with_bad_options_is_not_made(tenant_a, options, message):
    with pytest.raises(ValueError, match=message):
        token_create(tenant=tenant_a, name="x", created_by=None, **options)
    assert not ApiToken.objects.exists()


# --- the pages ----------------------------------------------------------------------------


def test_an_admin_picks_scopes_and_an_expiry_and_the_list_shows_them(admin_a, tenant_a):
    client = client_for(admin_a)
    page = client.get("/t/acme/settings/tokens/").content.decode()
    # Both scopes a tenant token may have are offered and ticked; control is not offered.
    assert re.search(r'name="scopes" value="ingest" checked', page)
    assert re.search(r'name="scopes" value="read" checked', page)
    assert 'value="control"' not in page
    response = client.post(
        "/t/acme/settings/tokens/new/",
        {"name": "dashboards", "scopes_chosen": "1", "scopes": ["read"], "expires_in_days": "30"},
    )
    assert response.status_code == 201
    token = ApiToken.objects.get()
    assert token.scopes == "read"
    assert token.expires_at is not None
    assert timedelta(days=29, hours=23) < token.expires_at - timezone.now() <= timedelta(days=30)
    listed = client.get("/t/acme/settings/tokens/").content.decode()
    row = re.search(rf'<tr id="token-{token.pk}">.*?</tr>', listed, re.S)
    assert row is not None
    assert '<td class="token-scopes">read</td>' in row.group(0)
    assert token.expires_at.strftime("%Y-%m-%d %H:%M") + " UTC" in row.group(0)


def test_an_expired_token_is_listed_as_expired(admin_a, tenant_a):
    token_create(tenant=tenant_a, name="short", created_by=None, expires_in_days=1)
    with time_machine.travel(timezone.now() + timedelta(days=2), tick=False):
        listed = client_for(admin_a).get("/t/acme/settings/tokens/").content.decode()
    assert ">Expired</span>" in listed


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"scopes_chosen": "1"}, "Choose at least one scope"),
        ({"scopes_chosen": "1", "scopes": ["read"], "expires_in_days": "soon"}, "Expiry is a number of days"),
        ({"scopes_chosen": "1", "scopes": ["read"], "expires_in_days": "99999"}, "Expiry must be 1 to 3650 days"),
        ({"scopes_chosen": "1", "scopes": ["control"]}, "Unknown scope control"),
    ],
)
def test_a_bad_choice_on_the_page_says_what_is_wrong_and_makes_nothing(admin_a, form, message):
    response = client_for(admin_a).post("/t/acme/settings/tokens/new/", {"name": "x", **form})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ApiToken.objects.exists()


def test_a_person_picks_scopes_and_an_expiry_for_their_own_token(operator_a):
    client = client_for(operator_a)
    page = client.get("/account/tokens/").content.decode()
    assert re.search(r'name="scopes" value="control" checked', page)
    assert 'value="ingest"' not in page
    response = client.post(
        "/account/tokens/new/", {"name": "laptop", "scopes_chosen": "1", "scopes": ["read"], "expires_in_days": "7"}
    )
    assert response.status_code == 201
    token = PersonalToken.objects.get()
    assert token.scopes == "read" and token.expires_at is not None
    assert '<td class="token-scopes">read</td>' in client.get("/account/tokens/").content.decode()


def test_token_pages_and_their_answers_are_never_stored(admin_a, tenant_a):
    client = client_for(admin_a)
    mine, _ = personal_token_create(user=admin_a, name="mine")
    theirs, _ = token_create(tenant=tenant_a, name="fleet", created_by=None)
    answers = [
        client.get("/t/acme/settings/tokens/"),
        client.post("/t/acme/settings/tokens/new/", {"name": "new"}),
        client.post("/t/acme/settings/tokens/new/", {"name": " "}),
        client.post(f"/t/acme/settings/tokens/{theirs.pk}/revoke/"),
        client.get("/account/tokens/"),
        client.post("/account/tokens/new/", {"name": "new"}),
        client.post("/account/tokens/new/", {"name": " "}),
        client.post(f"/account/tokens/{mine.pk}/revoke/"),
    ]
    assert [a.status_code for a in answers] == [200, 201, 400, 302, 200, 201, 400, 302]
    for answer in answers:
        assert "no-store" in answer["Cache-Control"], answer.request["PATH_INFO"]


# --- sockets ------------------------------------------------------------------------------


def refusal(url: str, token: str) -> tuple[str, int]:
    """The error code a socket sends before it closes, and its close code."""
    with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10) as ws:
        error = json.loads(ws.recv(timeout=5))
        with pytest.raises(ConnectionClosed) as caught:
            ws.recv(timeout=5)
    assert caught.value.rcvd is not None
    return error["code"], caught.value.rcvd.code


def test_sockets_refuse_a_token_without_their_scope_or_past_its_expiry(asgi_server, tenant_a, agent_a, viewer_a):
    _, ingest_only = token_create(tenant=tenant_a, name="agents", created_by=None, scopes=["ingest"])
    _, read_only = token_create(tenant=tenant_a, name="watcher", created_by=None, scopes=["read"])
    _, short = token_create(tenant=tenant_a, name="short", created_by=None, expires_in_days=1)
    events = f"{asgi_server.ws_url}/ws/events?tenant_id=acme"
    agent = f"{asgi_server.ws_url}/ws/agent?external_id=worker-1"
    assert refusal(events, ingest_only) == ("E10008", 4403)
    assert refusal(agent, read_only) == ("E10008", 4403)
    _, control_only = personal_token_create(user=viewer_a, name="cli", scopes=["control"])
    assert refusal(events, control_only) == ("E10008", 4403)
    # Each token is accepted where its scope is enough.
    with connect(events, additional_headers={"Authorization": f"Bearer {read_only}"}, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "subscribe", "topics": ["agent.state.changed"]}))
        assert json.loads(ws.recv(timeout=5))["type"] == "subscribed"
    with connect(agent, additional_headers={"Authorization": f"Bearer {ingest_only}"}, open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "control"
    ApiToken.objects.filter(name="short").update(expires_at=timezone.now() - timedelta(seconds=1))
    assert refusal(events, short) == ("E10007", 4401)
    assert refusal(agent, short) == ("E10007", 4401)


@pytest.mark.parametrize("name", ["ci\x00", "tab\there", "\ud800"])
def test_a_token_name_with_a_control_character_is_refused_by_the_service_too(tenant_a, admin_a, name):
    # Forms are refused at the boundary first; the Python API reaches the service directly.
    with pytest.raises(ValueError, match="The name contains"):
        token_create(tenant=tenant_a, name=name, created_by=admin_a)
    with pytest.raises(ValueError, match="The name contains"):
        personal_token_create(user=admin_a, name=name)
    assert not ApiToken.objects.exists() and not PersonalToken.objects.exists()
