"""Asking and deciding (approvals/services.py; docs/approvals.md): idempotent asking, the
refusals and their codes, who may decide, two approvers, expiry by ``on_timeout``, the
audit trail, and one tenant only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from approvals import services
from approvals.models import ApprovalRequest, State
from approvals.services import NewRequest, decide, expire_due, request_create, rule_add
from audit.models import AuditEntry
from audit.services import Actor
from core.errors import ErrorCode, InterfaceError
from events.models import Event

pytestmark = pytest.mark.django_db


def ask(agent, action="email.send", summary="Mail 40 customers about the outage", **extra) -> ApprovalRequest:
    request, _ = request_create(agent=agent, new=NewRequest(action, summary, **extra))
    return request


def decided(request, user, role="operator", approve=True, comment=""):
    return decide(request_id=request.pk, tenant_id=request.tenant_id, actor=Actor(user=user), role=role,
                  approve=approve, comment=comment)  # fmt: skip


def test_an_agent_asks_and_asking_again_with_its_key_gets_the_same_request(agent_a):
    first, created = request_create(agent=agent_a, new=NewRequest("email.send", "Mail them", {"to": 40}, key="k-1"))
    again, created_again = request_create(agent=agent_a, new=NewRequest("email.send", "Mail them", key="k-1"))
    assert created and not created_again and again.pk == first.pk
    assert (first.state, first.needs_role, first.needs_approvers, first.details) == (
        "pending",
        "operator",
        1,
        {"to": 40},
    )
    entry = AuditEntry.objects.get(action="approval.request")
    assert entry.actor_label == "agent worker-1" and entry.delta["details"] == {"to": 40}
    assert Event.objects.filter(type="approval.requested", agent=agent_a).count() == 1


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ({"action": "send mail"}, ErrorCode.APPROVAL_INVALID),
        ({"summary": ""}, ErrorCode.APPROVAL_INVALID),
        ({"summary": "x" * 501}, ErrorCode.APPROVAL_INVALID),
        ({"summary": "bell\x07"}, ErrorCode.APPROVAL_INVALID),
        ({"details": {"k": float("nan")}}, ErrorCode.APPROVAL_INVALID),
        ({"details": {"blob": "x" * 70_000}}, ErrorCode.APPROVAL_DETAILS_TOO_LARGE),
        ({"timeout": timedelta(seconds=9)}, ErrorCode.APPROVAL_BAD_TIMEOUT),
        ({"timeout": timedelta(days=7, seconds=1)}, ErrorCode.APPROVAL_BAD_TIMEOUT),
        ({"on_timeout": "ignore"}, ErrorCode.APPROVAL_BAD_ON_TIMEOUT),
        ({"key": "has space"}, ErrorCode.APPROVAL_INVALID),
    ],
)
def test_bad_requests_are_refused_with_their_code_and_nothing_is_stored(agent_a, extra, code):
    fields = {"action": "email.send", "summary": "Mail them", **extra}
    with pytest.raises(InterfaceError) as refused:
        request_create(agent=agent_a, new=NewRequest(**fields))
    assert refused.value.code == code
    assert not ApprovalRequest.objects.exists() and not AuditEntry.objects.filter(action="approval.request").exists()


def test_an_operator_approves_and_the_decision_is_kept_and_audited(agent_a, operator_a):
    request = ask(agent_a, details={"before": "a", "after": "b"})
    done = decided(request, operator_a, comment="fine")
    assert (done.state, done.approved, done.decided_by_label, done.comment) == ("approved", True, "oscar", "fine")
    entry = AuditEntry.objects.get(action="approval.approve")
    assert entry.actor_label == "oscar" and entry.delta["details"] == {"before": "a", "after": "b"}
    assert Event.objects.filter(type="approval.approved", agent=agent_a).exists()


def test_a_rejection_needs_a_comment(agent_a, operator_a):
    request = ask(agent_a)
    with pytest.raises(InterfaceError) as refused:
        decided(request, operator_a, approve=False, comment="  ")
    assert refused.value.code == ErrorCode.APPROVAL_COMMENT_REQUIRED
    assert decided(request, operator_a, approve=False, comment="not during the freeze").state == State.REJECTED


def test_a_decided_request_is_refused_saying_who_decided_and_how(agent_a, operator_a, admin_a):
    request = ask(agent_a)
    decided(request, admin_a, approve=False, comment="no")
    with pytest.raises(InterfaceError) as refused:
        decided(request, operator_a)
    assert refused.value.code == ErrorCode.APPROVAL_DECIDED and refused.value.http_status == 409
    assert "alice already rejected it" in refused.value.message and "“no”" in refused.value.message
    denied = AuditEntry.objects.get(action="approval.approve", outcome="denied")  # refusals are audited too
    assert (denied.actor_label, denied.error_code) == ("oscar", "E10355")


def test_a_viewer_cannot_decide_and_a_rule_can_ask_for_an_admin(agent_a, viewer_a, operator_a, admin_a, tenant_a):
    with pytest.raises(InterfaceError) as refused:
        decided(ask(agent_a, key="a"), viewer_a, role="viewer")
    assert refused.value.code == ErrorCode.PERMISSION_DENIED
    with pytest.raises(InterfaceError) as refused:  # the role first: a viewer's rejection is not "needs a comment"
        decided(ask(agent_a, key="a"), viewer_a, role="viewer", approve=False)
    assert refused.value.code == ErrorCode.PERMISSION_DENIED
    rule_add(tenant_id=tenant_a.pk, actor=Actor(user=admin_a), action="deploy.*", needs_role="admin")
    deploy = ask(agent_a, action="deploy.prod", key="b")
    assert deploy.needs_role == "admin" and ask(agent_a, key="c").needs_role == "operator"
    with pytest.raises(InterfaceError) as refused:
        decided(deploy, operator_a)
    assert refused.value.code == ErrorCode.APPROVAL_ROLE_REQUIRED
    assert decided(deploy, admin_a, role="admin").state == State.APPROVED


def test_two_approvers_are_two_different_people(agent_a, operator_a, admin_a, tenant_a):
    agent_a.labels = {"env": "prod"}
    agent_a.save()
    rule_add(tenant_id=tenant_a.pk, actor=Actor(user=admin_a), selector="env=prod", needs_approvers=2)
    request = ask(agent_a)
    assert request.needs_approvers == 2
    assert decided(request, operator_a).state == State.PENDING  # one of two
    with pytest.raises(InterfaceError) as refused:
        decided(request, operator_a)
    assert refused.value.code == ErrorCode.APPROVAL_SAME_APPROVER
    done = decided(request, admin_a, role="admin")
    assert done.state == State.APPROVED and done.decided_by_label == "alice"
    assert AuditEntry.objects.get(action="approval.approve", actor_label="alice").delta["by"] == ["oscar", "alice"]


def test_a_request_past_its_time_is_refused_and_expired_by_its_on_timeout(agent_a, operator_a):
    now = timezone.now()
    rejecting = ask(agent_a, key="r", timeout=timedelta(seconds=10))
    approving = ask(agent_a, key="a", timeout=timedelta(seconds=10), on_timeout="approve")
    later = now + timedelta(seconds=11)
    with pytest.raises(InterfaceError) as refused:
        decide(request_id=rejecting.pk, tenant_id=rejecting.tenant_id, actor=Actor(user=operator_a),
               role="operator", approve=True, now=later)  # fmt: skip
    assert refused.value.code == ErrorCode.APPROVAL_EXPIRED
    assert expire_due(now=later) == 2 and expire_due(now=later) == 0
    rejecting.refresh_from_db()
    approving.refresh_from_db()
    assert (rejecting.state, rejecting.approved, approving.approved) == ("expired", False, True)
    assert rejecting.decided_by_label == "timeout" and "No decision within 10 s" in rejecting.comment
    assert AuditEntry.objects.filter(action="approval.expire").count() == 2
    with pytest.raises(InterfaceError) as refused:
        decided(rejecting, operator_a)
    assert refused.value.code == ErrorCode.APPROVAL_EXPIRED


def test_another_tenants_request_is_not_found(agent_a, operator_b, tenant_b):
    request = ask(agent_a)
    with pytest.raises(InterfaceError) as refused:
        decide(request_id=request.pk, tenant_id=tenant_b.pk, actor=Actor(user=operator_b), role="admin", approve=True)
    assert refused.value.code == ErrorCode.APPROVAL_NOT_FOUND
    request.refresh_from_db()
    assert request.state == State.PENDING


def test_the_strictest_matching_rule_wins(agent_a, admin_a, tenant_a):
    admin = Actor(user=admin_a)
    rule_add(tenant_id=tenant_a.pk, actor=admin, action="email.*", needs_approvers=2)
    rule_add(tenant_id=tenant_a.pk, actor=admin, action="*", needs_role="admin")
    rule_add(tenant_id=tenant_a.pk, actor=admin, action="email.send", selector="env=staging", needs_approvers=1)
    assert services.rule_for(agent_a, "email.send") == ("admin", 2)
    assert services.rule_for(agent_a, "db.drop") == ("admin", 1)
