"""Many people deciding one request at once (approvals/services.py ``decide``, which locks
the request's row; approvals/api.py over HTTP): exactly one decision wins, everyone else
is told who won and how, and the audit trail holds the decision once. Each decider is a
thread with its own database connection, released together by a barrier."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client

from approvals.models import ApprovalRequest, ApprovalVote, State
from approvals.services import NewRequest, decide, request_create, rule_add
from audit.models import AuditEntry
from audit.services import Actor
from core.errors import InterfaceError
from tenancy.models import Role
from tenancy.services import personal_token_create
from tests.factories import MembershipFactory, UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]
DECIDERS = 20
T = TypeVar("T")


def together(count: int, call: Callable[[int], T]) -> list[T | InterfaceError]:
    """``call(0)`` … ``call(count - 1)`` in ``count`` threads released at once; each answer,
    or the ``InterfaceError`` it raised."""
    barrier = threading.Barrier(count)

    def one(n: int) -> T | InterfaceError:
        barrier.wait()
        try:
            return call(n)
        except InterfaceError as exc:
            return exc
        finally:
            connections.close_all()  # this thread's own connection

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


@pytest.fixture
def deciders(tenant_a) -> list[User]:
    people = [UserFactory.create(username=f"decider-{n:02}") for n in range(DECIDERS)]
    for person in people:
        MembershipFactory.create(user=person, tenant=tenant_a, role=Role.OPERATOR)
    return people


def asked(agent) -> ApprovalRequest:
    return request_create(agent=agent, new=NewRequest("email.send", "Mail 40 customers"))[0]


def decisions() -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action__in=["approval.approve", "approval.reject"], outcome="success"))


def test_of_twenty_people_approving_and_rejecting_at_once_exactly_one_decides(agent_a, deciders):
    request = asked(agent_a)

    def one(n: int) -> ApprovalRequest:
        approve = n % 2 == 0
        return decide(
            request_id=request.pk, tenant_id=request.tenant_id, actor=Actor(user=deciders[n]), role=Role.OPERATOR,
            approve=approve, comment="" if approve else f"no, says {n}",
        )  # fmt: skip

    answers = together(DECIDERS, one)
    won = [a for a in answers if isinstance(a, ApprovalRequest)]
    lost = [a for a in answers if isinstance(a, InterfaceError)]
    assert len(won) == 1 and len(lost) == DECIDERS - 1
    winner = won[0]
    request.refresh_from_db()
    assert request.state == winner.state and request.state in (State.APPROVED, State.REJECTED)
    assert request.decided_by_label == winner.decided_by_label
    told = f"{winner.decided_by_label} already {winner.state} it"
    assert all(e.code == "E10355" and told in e.message for e in lost), {e.message for e in lost}
    (entry,) = decisions()
    verb = {State.APPROVED: "approve", State.REJECTED: "reject"}[State(winner.state)]
    assert entry.actor_label == winner.decided_by_label and entry.action == f"approval.{verb}"


def test_a_request_for_two_approvers_is_approved_by_two_different_people_even_when_each_clicks_twice(
    tenant_a, admin_a, agent_a, deciders
):
    rule_add(tenant_id=tenant_a.pk, actor=Actor(user=admin_a), needs_approvers=2)
    request = asked(agent_a)
    assert request.needs_approvers == 2
    people = deciders[: DECIDERS // 2]  # ten people, each in two threads

    def one(n: int) -> ApprovalRequest:
        return decide(
            request_id=request.pk, tenant_id=request.tenant_id, actor=Actor(user=people[n // 2]), role=Role.OPERATOR,
            approve=True,
        )  # fmt: skip

    answers = together(DECIDERS, one)
    won = [a for a in answers if isinstance(a, ApprovalRequest)]
    codes = sorted({a.code for a in answers if isinstance(a, InterfaceError)})
    assert len(won) == 2 and set(codes) <= {"E10355", "E10357"}, codes
    request.refresh_from_db()
    (first,) = ApprovalVote.objects.filter(request=request)
    assert request.state == State.APPROVED and request.decided_by_label != first.user_label
    entries = sorted(decisions(), key=lambda e: e.pk)
    assert [e.actor_label for e in entries] == [first.user_label, request.decided_by_label]
    assert entries[0].delta["approvals"] == "1 of 2" and entries[1].delta["by"] == [
        first.user_label,
        request.decided_by_label,
    ]


def _post(token: str, request_id: Any, verb: str, body: dict[str, str], **headers: str) -> Any:
    headers["Authorization"] = f"Bearer {token}"
    return Client().post(
        f"/api/v1/approvals/{request_id}/{verb}", json.dumps(body), content_type="application/json", headers=headers
    )


def test_over_the_api_one_of_twenty_decides_and_the_others_get_409_naming_the_winner(agent_a, deciders):
    request = asked(agent_a)
    tokens = [personal_token_create(user=person, name="race")[1] for person in deciders]

    def one(n: int) -> Any:
        if n % 2:
            return _post(tokens[n], request.pk, "reject", {"comment": f"no, says {n}"})
        return _post(tokens[n], request.pk, "approve", {})

    answers: list[Any] = together(DECIDERS, one)  # HTTP answers: the API raises nothing
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [409] * (DECIDERS - 1), [a.content for a in answers if a.status_code not in (200, 409)]
    (winner,) = [a.json() for a in answers if a.status_code == 200]
    told = f"{winner['decided_by']} already {winner['state']} it"
    errors = [a.json()["error"] for a in answers if a.status_code == 409]
    assert all(e["code"] == "E10355" and told in e["message"] for e in errors)
    assert all(e["details"]["decided_by"] == winner["decided_by"] for e in errors)
    assert len(decisions()) == 1


def test_one_person_retrying_with_one_key_at_once_decides_once_and_every_call_gets_that_answer(agent_a, operator_a):
    request = asked(agent_a)
    token = personal_token_create(user=operator_a, name="retries")[1]
    answers: list[Any] = together(
        10, lambda n: _post(token, request.pk, "approve", {"comment": "go"}, **{"Idempotency-Key": "k"})
    )
    assert [a.status_code for a in answers] == [200] * 10, [a.content for a in answers]
    assert len({a.content for a in answers}) == 1
    assert sum(a.get("Idempotent-Replayed") == "true" for a in answers) == 9
    assert len(decisions()) == 1
