"""The approvals API (approvals/api.py; docs/api.md, "The approvals API"): who lists and
who decides which tenant's requests, the list's order, filters and pages, each refusal
with its code and status, idempotent retries, and the OpenAPI entries."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from approvals.models import ApprovalRequest, State
from approvals.services import NewRequest, request_create, rule_add
from audit.models import AuditEntry
from audit.services import Actor
from l10console.api import api
from tenancy.services import personal_token_create
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db
URL = "/api/v1/approvals"


def personal(user, scopes=None) -> str:
    return personal_token_create(user=user, name="script", scopes=scopes)[1]


def ask(agent, summary="Mail 40 customers", action="email.send", key=None, **extra) -> ApprovalRequest:
    return request_create(agent=agent, new=NewRequest(action, summary, key=key, **extra))[0]


def listing(token: str | None, query: dict[str, Any] | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return Client().get(URL, query or {}, headers=headers)


def summaries(token: str, query: dict[str, Any] | None = None) -> list[str]:
    response = listing(token, query)
    assert response.status_code == 200, response.content
    return [a["summary"] for a in response.json()["approvals"]]


def decide(token: str | None, request_id: Any, verb: str = "approve", body: Any = None, **headers: str) -> Any:
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, str) else json.dumps({} if body is None else body)
    return Client().post(f"{URL}/{request_id}/{verb}", data, content_type="application/json", headers=headers)


def refused(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code, error
    assert {"code", "message", "recoverable", "suggestion"} <= set(error)
    return dict(error)


@pytest.fixture
def inbox(agent_a, time_machine):
    """Three pending requests a minute apart, and two decided ones."""
    start = timezone.now()
    made = {}
    for n, summary in enumerate(["first", "second", "third", "approved", "rejected"]):
        time_machine.move_to(start + timedelta(minutes=n))
        made[summary] = ask(agent_a, summary, key=summary)
    return made


# --- listing ------------------------------------------------------------------------------


def test_the_list_is_the_pending_requests_oldest_first_then_the_decided_newest_first(inbox, operator_a, viewer_a):
    token = personal(operator_a)
    assert decide(token, inbox["approved"].pk).status_code == 200
    assert decide(token, inbox["rejected"].pk, "reject", {"comment": "not today"}).status_code == 200
    reader = personal(viewer_a, scopes=["read"])
    assert summaries(reader) == ["first", "second", "third"]
    assert summaries(reader, {"state": "approved"}) == ["approved"]
    assert summaries(reader, {"state": "all"}) == ["rejected", "approved", "third", "second", "first"]
    rejected = listing(reader, {"state": "rejected"}).json()["approvals"][0]
    assert rejected["decided_by"] == "oscar" and rejected["comment"] == "not today" and rejected["approved"] is False


def test_each_item_says_what_was_asked_who_may_decide_and_the_answer(agent_a, operator_a, viewer_a):
    asked = ask(agent_a, details={"to": 40}, timeout=timedelta(minutes=5))
    decide(personal(operator_a), asked.pk, body={"comment": "go"})
    (item,) = listing(personal(viewer_a), {"state": "approved"}).json()["approvals"]
    assert item["id"] == str(asked.pk) and item["agent_id"] == str(agent_a.pk) and item["external_id"] == "worker-1"
    assert (item["action"], item["summary"], item["details"]) == ("email.send", "Mail 40 customers", {"to": 40})
    assert (item["state"], item["approved"], item["needs_role"], item["needs_approvers"]) == (
        "approved",
        True,
        "operator",
        1,
    )
    assert [a["by"] for a in item["approvals"]] == ["oscar"] and item["approvals"][0]["comment"] == "go"
    assert item["decided_by"] == "oscar" and item["decided_at"] and item["created_at"] and item["expires_at"]
    assert item["on_timeout"] == "reject"


def test_the_list_filters_by_agent_and_action(tenant_a, agent_a, viewer_a):
    other = AgentFactory.create(tenant=tenant_a, external_id="mailer")
    ask(agent_a, "a deploy", action="deploy.prod")
    ask(agent_a, "a mail")
    ask(other, "their mail")
    reader = personal(viewer_a)
    assert summaries(reader, {"agent": "mailer"}) == ["their mail"]
    assert summaries(reader, {"action": "deploy.prod"}) == ["a deploy"]
    assert summaries(reader, {"agent": "worker-1", "action": "email.send"}) == ["a mail"]
    assert summaries(reader, {"agent": "nobody"}) == []


def test_pages_follow_each_other_with_the_cursor_and_a_cursor_keeps_to_its_list(inbox, viewer_a, operator_a):
    reader = personal(viewer_a)
    first = listing(reader, {"limit": "2"}).json()
    assert [a["summary"] for a in first["approvals"]] == ["first", "second"]
    rest = summaries(reader, {"limit": "2", "cursor": first["next_cursor"]})
    assert rest == ["third", "approved"]
    last = listing(reader, {"limit": "2", "cursor": listing(reader, {"limit": "4"}).json()["next_cursor"]}).json()
    assert [a["summary"] for a in last["approvals"]] == ["rejected"] and last["next_cursor"] is None
    error = refused(listing(reader, {"state": "all", "cursor": first["next_cursor"]}), 400, "E10350")
    assert error["details"]["field"] == "cursor"
    refused(listing(reader, {"cursor": first["next_cursor"][:-2] + "xx"}), 400, "E10350")


def test_a_person_reads_only_tenants_they_belong_to(tenant_a, tenant_b, agent_a, agent_b, viewer_a, operator_b):
    ask(agent_a, "ours")
    ask(agent_b, "theirs")
    assert summaries(personal(viewer_a)) == ["ours"]
    assert summaries(personal(viewer_a), {"tenant_id": "acme"}) == ["ours"]
    assert summaries(personal(operator_b)) == ["theirs"]
    refused(listing(personal(operator_b), {"tenant_id": "acme"}), 404, "E10005")
    refused(listing(personal(operator_b), {"tenant_id": str(tenant_a.pk)}), 404, "E10005")


def test_listing_needs_a_personal_token_with_the_read_scope(agent_a, token_a, viewer_a):
    refused(listing(None), 401, "E10001")
    refused(listing(token_a), 401, "E10002")  # an agents' token is not a person's
    error = refused(listing(personal(viewer_a, scopes=["control"])), 403, "E10008")
    assert "'read'" in error["message"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"colour": "red"}, "colour"),
        ({"state": "decided"}, "state"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"agent": "x" * 201}, "agent"),
        ({"action": "deploy\x00"}, "action"),
        ({"agent": "worker\x1b"}, "agent"),
        ({"cursor": "not-a-cursor"}, "cursor"),
    ],
)
def test_a_bad_parameter_is_refused_naming_it(viewer_a, query, field):
    error = refused(listing(personal(viewer_a), query), 400, "E10350")
    assert error["details"]["field"] == field


def test_a_parameter_given_twice_is_refused(viewer_a):
    response = Client().get(f"{URL}?state=pending&state=all", headers={"Authorization": f"Bearer {personal(viewer_a)}"})
    assert refused(response, 400, "E10350")["details"]["field"] == "state"


# --- deciding -----------------------------------------------------------------------------


def test_an_operator_approves_and_the_answer_is_the_request_as_it_now_is(agent_a, operator_a):
    asked = ask(agent_a)
    response = decide(personal(operator_a), asked.pk, body={"comment": "fine by me"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["state"], body["approved"], body["decided_by"], body["comment"]) == (
        "approved",
        True,
        "oscar",
        "fine by me",
    )
    asked.refresh_from_db()
    assert asked.state == State.APPROVED and asked.decided_by == operator_a
    entry = AuditEntry.objects.get(action="approval.approve", outcome="success")
    assert entry.actor_label == "oscar" and entry.reason == "fine by me"


def test_a_rejection_needs_a_comment(agent_a, operator_a):
    asked = ask(agent_a)
    token = personal(operator_a)
    refused(decide(token, asked.pk, "reject"), 422, "E10358")
    refused(decide(token, asked.pk, "reject", {"comment": "   "}), 422, "E10358")
    response = decide(token, asked.pk, "reject", {"comment": "not during the freeze"})
    assert response.status_code == 200 and response.json()["state"] == "rejected"


def test_a_decided_request_is_409_saying_who_decided_and_how(agent_a, operator_a, admin_a):
    asked = ask(agent_a)
    decide(personal(admin_a), asked.pk, "reject", {"comment": "no"})
    error = refused(decide(personal(operator_a), asked.pk), 409, "E10355")
    assert "alice already rejected it" in error["message"] and "“no”" in error["message"]
    assert error["details"] == {"state": "rejected", "decided_by": "alice"}


def test_an_expired_request_is_409(agent_a, operator_a, time_machine):
    asked = ask(agent_a, timeout=timedelta(seconds=30))
    time_machine.move_to(timezone.now() + timedelta(minutes=1))
    refused(decide(personal(operator_a), asked.pk), 409, "E10356")


def test_a_viewer_cannot_decide_and_a_rule_can_ask_for_an_admin(tenant_a, agent_a, viewer_a, operator_a, admin_a):
    refused(decide(personal(viewer_a), ask(agent_a, key="a").pk), 403, "E10004")
    rule_add(tenant_id=tenant_a.pk, actor=Actor(user=admin_a), action="deploy.*", needs_role="admin")
    deploy = ask(agent_a, "Deploy to prod", action="deploy.prod", key="b")
    refused(decide(personal(operator_a), deploy.pk), 403, "E10359")
    assert decide(personal(admin_a), deploy.pk).json()["state"] == "approved"
    assert ApprovalRequest.objects.get(key="a").state == State.PENDING


def test_two_approvers_are_two_different_people(tenant_a, agent_a, operator_a, admin_a):
    rule_add(tenant_id=tenant_a.pk, actor=Actor(user=admin_a), needs_approvers=2)
    asked = ask(agent_a)
    first = decide(personal(operator_a), asked.pk, body={"comment": "one"}).json()
    assert first["state"] == "pending" and [a["by"] for a in first["approvals"]] == ["oscar"]
    refused(decide(personal(operator_a), asked.pk), 409, "E10357")
    done = decide(personal(admin_a), asked.pk).json()
    assert done["state"] == "approved" and [a["by"] for a in done["approvals"]] == ["oscar", "alice"]


def test_another_tenants_request_is_as_absent_as_none(agent_a, operator_b):
    asked = ask(agent_a)
    token = personal(operator_b)
    assert refused(decide(token, asked.pk), 404, "E10354") == refused(
        decide(token, "5b7a52b8-0000-4000-8000-000000000000"), 404, "E10354"
    )
    refused(decide(token, "not-a-uuid"), 404, "E10354")
    asked.refresh_from_db()
    assert asked.state == State.PENDING


def test_deciding_needs_a_personal_token_with_the_control_scope(agent_a, token_a, operator_a):
    asked = ask(agent_a)
    refused(decide(None, asked.pk), 401, "E10001")
    refused(decide(token_a, asked.pk), 401, "E10002")
    refused(decide(personal(operator_a, scopes=["read"]), asked.pk), 403, "E10008")
    asked.refresh_from_db()
    assert asked.state == State.PENDING


@pytest.mark.parametrize(
    ("body", "code", "status"),
    [
        ({"comment": "ok", "approve": True}, "E10350", 400),  # an unknown key
        ({"comment": "nul\x00here"}, "E10350", 400),
        ({"comment": "bell\x07"}, "E10350", 400),
        ({"comment": 5}, "E10350", 400),
        ({"comment": "x" * 2001}, "E10350", 400),
        ('{"comment": NaN}', "E10801", 400),
        ("[]", "E10801", 400),
    ],
)
def test_a_body_that_does_not_fit_is_refused_and_changes_nothing(agent_a, operator_a, body, code, status):
    asked = ask(agent_a)
    refused(decide(personal(operator_a), asked.pk, body=body), status, code)
    asked.refresh_from_db()
    assert (
        asked.state == State.PENDING
        and not AuditEntry.objects.filter(action="approval.approve", outcome="success").exists()
    )


def test_a_comment_may_have_line_breaks(agent_a, operator_a):
    response = decide(personal(operator_a), ask(agent_a).pk, "reject", {"comment": "No:\n\tnot today"})
    assert response.status_code == 200 and response.json()["comment"] == "No:\n\tnot today"


# --- idempotency ----------------------------------------------------------------------------


def test_a_retry_with_the_same_key_gets_the_first_answer_and_decides_once(agent_a, operator_a, admin_a):
    asked = ask(agent_a)
    token = personal(operator_a)
    first = decide(token, asked.pk, body={"comment": "go"}, **{"Idempotency-Key": "decide-1"})
    again = decide(token, asked.pk, body={"comment": "go"}, **{"Idempotency-Key": "decide-1"})
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert AuditEntry.objects.filter(action="approval.approve", outcome="success").count() == 1
    # The answer stays the first one, whatever happened since.
    assert decide(token, asked.pk, body={"comment": "go"}, **{"Idempotency-Key": "decide-1"}).json() == first.json()
    refused(decide(token, asked.pk, body={"comment": "go"}), 409, "E10355")  # without the key: decided


def test_the_same_key_with_another_decision_is_refused(agent_a, operator_a):
    first, second = ask(agent_a, key="one"), ask(agent_a, key="two")
    token = personal(operator_a)
    assert decide(token, first.pk, **{"Idempotency-Key": "k"}).status_code == 200
    refused(decide(token, first.pk, "reject", {"comment": "no"}, **{"Idempotency-Key": "k"}), 422, "E10304")
    refused(decide(token, second.pk, **{"Idempotency-Key": "k"}), 422, "E10304")
    second.refresh_from_db()
    assert second.state == State.PENDING


def test_a_key_is_a_persons_own(agent_a, operator_a, admin_a):
    first, second = ask(agent_a, key="one"), ask(agent_a, key="two")
    assert decide(personal(operator_a), first.pk, **{"Idempotency-Key": "same"}).status_code == 200
    response = decide(personal(admin_a), second.pk, **{"Idempotency-Key": "same"})
    assert response.status_code == 200 and "Idempotent-Replayed" not in response


def test_a_refused_decision_stores_no_answer_for_its_key(agent_a, operator_a):
    asked = ask(agent_a)
    token = personal(operator_a)
    refused(decide(token, asked.pk, "reject", {"comment": ""}, **{"Idempotency-Key": "r"}), 422, "E10358")
    assert decide(token, asked.pk, "reject", {"comment": ""}, **{"Idempotency-Key": "r"}).status_code == 422


def test_a_bad_key_is_refused(agent_a, operator_a):
    refused(decide(personal(operator_a), ask(agent_a).pk, **{"Idempotency-Key": "has space"}), 400, "E10308")


# --- the schema -----------------------------------------------------------------------------


def test_the_routes_are_in_the_openapi_schema_with_their_descriptions_and_errors():
    schema = api.get_openapi_schema()
    listed = schema["paths"]["/api/v1/approvals"]["get"]
    assert {p["name"] for p in listed["parameters"]} == {"tenant_id", "state", "agent", "action", "limit", "cursor"}
    assert listed["security"] == [{"PersonalReader": []}] and listed["summary"] and listed["description"]
    for verb in ("approve", "reject"):
        operation = schema["paths"][f"/api/v1/approvals/{{approval_id}}/{verb}"]["post"]
        assert operation["security"] == [{"PersonalBearer": []}]
        assert "E10355" in operation["description"] and operation["summary"]
        assert {200, 400, 401, 403, 404, 409, 422} <= {int(s) for s in operation["responses"]}
        assert operation["responses"][409]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")
    out = schema["components"]["schemas"]["ApprovalOut"]
    assert {"id", "external_id", "state", "approvals", "needs_role", "decided_by", "expires_at"} <= set(out["required"])
