"""What an agent speaks (ingest/api.py, ingest/consumers.py; docs/approvals.md): it asks
over HTTP, asking again with its key gets the same request, bad requests get their own
codes and store nothing, and the decision reaches it over its socket at once or in a
heartbeat's answer."""

from __future__ import annotations

import json
from uuid import uuid4

import pytest
from django.test import Client
from websockets.sync.client import connect

from approvals.models import ApprovalRequest
from approvals.services import decide
from audit.services import Actor
from tests.ingest.test_ingest_api import API, post

pytestmark = pytest.mark.django_db
ASK = {"action": "email.send", "summary": "Mail 40 customers", "details": {"to": 40}, "timeout_s": 600}


def asks(token, body, external_id="worker-1"):
    return post(token, f"/agents/{external_id}/approvals", body)


def read(token, approval_id, external_id="worker-1"):
    return Client().get(f"{API}/agents/{external_id}/approvals/{approval_id}", HTTP_AUTHORIZATION=f"Bearer {token}")


def test_an_agent_asks_and_asking_again_with_its_key_gets_the_same_request_and_decision(token_a, agent_a, operator_a):
    first = asks(token_a, {**ASK, "key": "mail-2026-11-30"})
    assert first.status_code == 201, first.content
    body = first.json()
    assert (body["state"], body["approved"], body["key"]) == ("pending", None, "mail-2026-11-30")
    decide(request_id=body["approval_id"], tenant_id=agent_a.tenant_id, actor=Actor(user=operator_a), role="operator",
           approve=False, comment="not today")  # fmt: skip
    again = asks(token_a, {**ASK, "key": "mail-2026-11-30"})
    assert again.status_code == 200
    assert again.json()["approval_id"] == body["approval_id"]
    assert (again.json()["state"], again.json()["approved"], again.json()["comment"]) == (
        "rejected",
        False,
        "not today",
    )
    assert ApprovalRequest.objects.count() == 1
    got = read(token_a, body["approval_id"])
    assert got.status_code == 200 and got.json()["decided_by"] == "oscar"


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"on_timeout": "ignore"}, 422, "E10353"),
        ({"timeout_s": 5}, 422, "E10352"),
        ({"timeout_s": 1e300}, 422, "E10352"),
        ({"details": {"blob": "x" * 70_000}}, 413, "E10351"),
        ({"action": "send mail"}, 400, "E10350"),
        ({"summary": "a\u0000b"}, 422, "E10802"),  # the input boundary's own check
        ({"colour": "red"}, 422, "E10802"),  # an unknown key
    ],
)
def test_bad_requests_get_their_own_code_and_store_nothing(token_a, agent_a, change, status, code):
    response = asks(token_a, {**ASK, **change})
    assert (response.status_code, response.json()["error"]["code"]) == (status, code), response.content
    assert not ApprovalRequest.objects.exists()


def test_another_tenants_agent_cannot_ask_or_read(token_a, agent_b, agent_a, operator_a):
    assert asks(token_a, ASK, external_id=agent_b.external_id + "-x").status_code == 404
    mine = asks(token_a, ASK).json()
    other = ApprovalRequest.objects.get(pk=mine["approval_id"])
    other.agent = agent_b
    other.tenant = agent_b.tenant
    other.save()
    got = read(token_a, mine["approval_id"])
    assert got.status_code == 404 and got.json()["error"]["code"] == "E10354"


def test_a_heartbeat_names_what_it_waits_on_and_its_answer_carries_their_decisions(token_a, agent_a, operator_a):
    waiting = [asks(token_a, {**ASK, "key": f"k{n}"}).json()["approval_id"] for n in range(2)]
    decide(request_id=waiting[0], tenant_id=agent_a.tenant_id, actor=Actor(user=operator_a), role="operator",
           approve=True)  # fmt: skip
    answer = post(token_a, "/agents/worker-1/heartbeat", {"state": "running", "approvals": [*waiting, str(uuid4())]})
    assert answer.status_code == 200, answer.content
    decisions = answer.json()["decisions"]
    assert [(d["approval_id"], d["approved"], d["decided_by"]) for d in decisions] == [(waiting[0], True, "oscar")]


@pytest.mark.redis
def test_the_decision_reaches_the_agents_socket_at_once(asgi_server, tenant_a, token_a, agent_a, operator_a):
    asked = asks(token_a, ASK).json()
    headers = {"Authorization": f"Bearer {token_a}"}
    with connect(f"{asgi_server.ws_url}/ws/agent?external_id=worker-1", additional_headers=headers) as sock:
        assert json.loads(sock.recv(timeout=5))["type"] == "control"
        decide(request_id=asked["approval_id"], tenant_id=tenant_a.pk, actor=Actor(user=operator_a),
               role="operator", approve=True, comment="go")  # fmt: skip
        frame = json.loads(sock.recv(timeout=5))
    assert frame["type"] == "approval"
    assert (frame["approval_id"], frame["approved"], frame["decided_by"], frame["comment"]) == (
        asked["approval_id"], True, "oscar", "go",
    )  # fmt: skip
