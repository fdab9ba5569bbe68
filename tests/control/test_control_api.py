"""The control API over HTTP: personal tokens, idempotency keys, clear codes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from audit.models import AuditEntry
from fleet.models import Agent
from tenancy.services import personal_token_create, personal_token_revoke

pytestmark = pytest.mark.django_db


def post(token: str, agent: Agent, action: str, body: dict[str, Any], **headers: str) -> Any:
    return Client().post(
        f"/api/v1/agents/{agent.pk}/{action}",
        json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}", **headers},
    )


@pytest.fixture
def oscar_token(operator_a) -> str:
    return personal_token_create(user=operator_a, name="cli")[1]


@pytest.fixture
def alice_token(admin_a) -> str:
    return personal_token_create(user=admin_a, name="cli")[1]


def test_a_pause_answers_with_the_change_and_audits_where_it_came_from(oscar_token, agent_a):
    response = post(
        oscar_token, agent_a, "pause", {"reason": "deploy"}, **{"User-Agent": "l10-cli/1", "X-Request-ID": "r-42"}
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["previous_state"], body["new_state"]) == ("success", "running", "paused")
    assert "Idempotent-Replayed" not in response
    entry = AuditEntry.objects.get(resource_type="agent")
    assert (entry.actor_label, entry.ip, entry.user_agent, entry.request_id) == (
        "oscar",
        "127.0.0.1",
        "l10-cli/1",
        "r-42",
    )


def test_a_retried_request_with_its_key_replays_the_answer(oscar_token, agent_a):
    first = post(oscar_token, agent_a, "pause", {}, **{"Idempotency-Key": "pause-1"})
    again = post(oscar_token, agent_a, "pause", {}, **{"Idempotency-Key": "pause-1"})
    assert again.status_code == 200 and again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert AuditEntry.objects.filter(resource_type="agent").count() == 1
    other = post(oscar_token, agent_a, "pause", {"reason": "different"}, **{"Idempotency-Key": "pause-1"})
    assert other.status_code == 422 and other.json()["error"]["code"] == "E10304"


@pytest.mark.parametrize(
    "action, body, key, status, code",
    [
        ("stop", {}, None, 422, "E10307"),
        ("stop", {"reason": ""}, None, 422, "E10307"),
        ("quota", {"quota_type": "dollars", "new_limit": 5}, None, 422, "E10303"),
        ("quota", {"quota_type": "tokens", "new_limit": -5}, None, 422, "E10303"),
        ("quota", {"quota_type": "tokens", "new_limit": 10**15}, None, 422, "E10303"),
        ("quota", {"quota_type": "tokens", "new_limit": "ten"}, None, 422, "E10303"),
        ("quota", {"quota_type": "tokens"}, None, 422, "E10303"),
        ("pause", {}, "not a key!", 400, "E10308"),
        ("pause", {"reason": 5}, None, 422, "E10310"),
        ("pause", {"reason": "x" * 501}, None, 422, "E10310"),
        ("pause", {"minutes": "30"}, None, 422, "E10311"),
        ("pause", {"mode": "eventually"}, None, 422, "E10311"),
        ("pause", {"until": "2030-01-01T00:00:00"}, None, 422, "E10311"),
        ("pause", {"colour": "red"}, None, 422, "E10310"),
        ("quota", {"quota_type": "tokens", "new_limit": 5, "period": "week"}, None, 422, "E10303"),
        ("restart", {}, None, 409, "E10301"),
    ],
)
def test_bad_input_gets_a_clear_code_and_changes_nothing(alice_token, agent_a, action, body, key, status, code):
    headers = {"Idempotency-Key": key} if key else {}
    before = Agent.objects.values("desired_state", "version", "quotas").get()
    response = post(alice_token, agent_a, action, body, **headers)
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code
    assert Agent.objects.values("desired_state", "version", "quotas").get() == before


def test_an_unknown_agent_is_a_404(oscar_token, agent_a):
    response = Client().post(
        "/api/v1/agents/0b0e2d4c-8f65-4a43-9e4f-0d6ab1f0a0a0/pause",
        "{}",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {oscar_token}",
    )
    assert response.status_code == 404 and response.json()["error"]["code"] == "E10101"


def test_a_revoked_token_is_refused(operator_a, agent_a):
    token, plain = personal_token_create(user=operator_a, name="old laptop")
    personal_token_revoke(token=token)
    response = post(plain, agent_a, "pause", {})
    assert response.status_code == 401 and response.json()["error"]["code"] == "E10003"
    assert Agent.objects.get().desired_state == "running"


def test_a_pause_for_an_hour_over_the_api(oscar_token, agent_a):
    response = post(oscar_token, agent_a, "pause", {"reason": "upgrade", "minutes": 60, "mode": "now"})
    assert response.status_code == 200
    agent = Agent.objects.get()
    assert (agent.desired_state, agent.pause_mode, agent.pause_reason) == ("paused", "now", "upgrade")
    assert agent.pause_until is not None
    bad = post(oscar_token, agent_a, "pause", {"minutes": -5})
    assert bad.status_code == 422 and "minutes" in bad.json()["error"]["message"]
