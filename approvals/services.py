"""Asking and deciding (docs/approvals.md).

- ``request_create``: an agent asks. The same ``key`` again (a restarted agent asking
  again) gets the same request back, and its decision if there is one. Who may decide is
  fixed when it is asked, by the strictest of the tenant's rules that match it.
- ``decide``: a person approves or rejects. The request's row is locked, so of two people
  deciding at once exactly one decides; the other is told who did and how (E10355). A
  request that needs two approvers takes two different people's approvals; a rejection
  by anyone allowed decides it at once.
- ``expire_due``: the periodic task's work: pending requests past their time are decided
  by their ``on_timeout``.

Every request, decision and expiry is audited and recorded as an event in the change's
transaction; after commit it is said on the tenant's hub (``approval.requested``,
``approval.updated`` for a first of two approvals, ``approval.decided``), which tells
the agent's socket, the inbox and the header's count.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from approvals import signals
from approvals.models import ApprovalRequest, ApprovalRule, ApprovalVote, OnTimeout, State
from approvals.selectors import said
from audit.models import Outcome
from audit.services import SYSTEM, Actor, Entry, audit_record
from core.errors import ErrorCode, InterfaceError
from core.inputs import json_problem, text_problem
from events.models import Severity
from events.services import emit
from fleet.labels import BadSelector, parse_selector, with_selector
from fleet.models import Agent
from realtime import hub
from tenancy.models import ROLE_RANK, Role

MIN_TIMEOUT = timedelta(seconds=10)
MAX_TIMEOUT = timedelta(days=7)
DEFAULT_TIMEOUT = timedelta(minutes=30)
ACTION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}")
KEY = re.compile(r"[A-Za-z0-9._:/-]{1,200}")
MAX_COMMENT = 2000


@dataclass(frozen=True)
class NewRequest:
    action: str
    summary: str
    details: Any = None
    timeout: timedelta = DEFAULT_TIMEOUT
    on_timeout: str = OnTimeout.REJECT
    key: str | None = None


def _invalid(field: str, problem: str, code: ErrorCode = ErrorCode.APPROVAL_INVALID) -> InterfaceError:
    return InterfaceError(code, f"“{field}”: {problem}. Nothing was stored.", details={"field": field})


def checked(new: NewRequest) -> NewRequest:
    """``new`` as it will be stored, or the refusal (E10350–E10353)."""
    if not ACTION.fullmatch(new.action or ""):
        raise _invalid("action", "1 to 100 letters, digits and . _ : / - (as email.send)")
    summary = (new.summary or "").strip()
    if not summary or len(summary) > 500:
        raise _invalid("summary", "1 to 500 characters")
    if problem := text_problem(summary):
        raise _invalid("summary", problem)
    if new.key is not None and not KEY.fullmatch(new.key):
        raise _invalid("key", "1 to 200 letters, digits and . _ : / -")
    if new.on_timeout not in OnTimeout.values:
        raise _invalid("on_timeout", "reject or approve", ErrorCode.APPROVAL_BAD_ON_TIMEOUT)
    if not MIN_TIMEOUT <= new.timeout <= MAX_TIMEOUT:
        raise _invalid("timeout", "from 10 seconds to 7 days", ErrorCode.APPROVAL_BAD_TIMEOUT)
    if new.details is not None:
        if problem := json_problem(new.details):
            raise _invalid("details", problem)
        size = len(json.dumps(new.details, ensure_ascii=False).encode())
        limit = settings.L10.approval_max_details_bytes
        if size > limit:
            raise _invalid("details", f"{size:,} bytes of JSON, over {limit:,}", ErrorCode.APPROVAL_DETAILS_TOO_LARGE)
    return NewRequest(new.action, summary, new.details, new.timeout, new.on_timeout, new.key)


def rule_for(agent: Agent, action: str) -> tuple[str, int]:
    """(the role that may decide, how many approvers) for a request of ``action`` by
    ``agent``: the strictest of the tenant's matching rules; an operator, once, without."""
    role: str = Role.OPERATOR
    approvers = 1
    for rule in ApprovalRule.objects.filter(tenant_id=agent.tenant_id):
        if not rule.matches_action(action):
            continue
        if rule.selector:
            try:
                picked = with_selector(Agent.objects.filter(pk=agent.pk), parse_selector(rule.selector)).exists()
            except BadSelector:
                picked = False
            if not picked:
                continue
        if ROLE_RANK[Role(rule.needs_role)] > ROLE_RANK[Role(role)]:
            role = rule.needs_role
        approvers = max(approvers, rule.needs_approvers)
    return role, approvers


def request_create(*, agent: Agent, new: NewRequest, now: datetime | None = None) -> tuple[ApprovalRequest, bool]:
    """Store the agent's request (True), or return the one it asked before with the same
    key (False). Refusals store nothing."""
    new = checked(new)
    key = new.key or uuid.uuid4().hex
    found = ApprovalRequest.objects.filter(agent=agent, key=key).first()
    if found is not None:
        return found, False
    now = now or timezone.now()
    role, approvers = rule_for(agent, new.action)
    try:
        with transaction.atomic():
            request = ApprovalRequest.objects.create(
                tenant_id=agent.tenant_id, agent=agent, key=key, action=new.action, summary=new.summary,
                details=new.details, on_timeout=new.on_timeout, needs_role=role, needs_approvers=approvers,
                created_at=now, expires_at=now + new.timeout,
            )  # fmt: skip
            actor = Actor(user=None, name=f"agent {agent.external_id}")
            audit_record(
                tenant_id=agent.tenant_id, actor=actor, at=now,
                entry=Entry("approval.request", "approval", str(request.pk), Outcome.SUCCESS, reason=new.summary,
                            delta={"action": new.action, "agent": agent.external_id, "key": key,
                                   "timeout_s": int(new.timeout.total_seconds()), "on_timeout": new.on_timeout,
                                   "needs_role": role, "needs_approvers": approvers, "details": new.details}),
            )  # fmt: skip
            emit(
                agent.tenant_id, "approval.requested", agent_id=agent.pk, external_id=agent.external_id,
                message=f"{agent.external_id} asks: {new.summary}"[:1000],
                data={"approval_id": str(request.pk), "action": new.action}, at=now,
            )  # fmt: skip
            hub.publish(agent.tenant_id, "approval.requested", said(request, agent))
            transaction.on_commit(lambda: signals.requested.send(sender=ApprovalRequest, request=request))
    except IntegrityError:  # the same key asked twice at once: the other one stored it
        found = ApprovalRequest.objects.filter(agent=agent, key=key).first()
        if found is None:
            raise
        return found, False
    return request, True


def _decided_already(request: ApprovalRequest) -> InterfaceError:
    if request.state == State.EXPIRED:
        return InterfaceError(
            ErrorCode.APPROVAL_EXPIRED,
            f"The request expired at {request.expires_at:%Y-%m-%d %H:%M:%S} UTC and was "
            f"{'approved' if request.approved else 'rejected'} by its timeout.",
        )
    return InterfaceError(
        ErrorCode.APPROVAL_DECIDED,
        f"{request.decided_by_label} already {request.state} it at {request.decided_at:%H:%M:%S} UTC"
        + (f": “{request.comment}”" if request.comment else "")
        + ".",
        details={"state": request.state, "decided_by": request.decided_by_label},
    )


def decide(
    *, request_id: uuid.UUID | str, tenant_id: int, actor: Actor, role: str, approve: bool, comment: str = "",
    now: datetime | None = None,
) -> ApprovalRequest:  # fmt: skip
    """``_decide``; a refusal is audited (``denied``, with its code) in a transaction of its
    own, since the attempt's own rolled back, as control audits every refusal."""
    try:
        return _decide(
            request_id=request_id, tenant_id=tenant_id, actor=actor, role=role, approve=approve, comment=comment,
            now=now,
        )  # fmt: skip
    except InterfaceError as exc:
        with transaction.atomic():
            audit_record(
                tenant_id=tenant_id, actor=actor,
                entry=Entry(f"approval.{'approve' if approve else 'reject'}", "approval", str(request_id)[:64],
                            Outcome.DENIED, reason=(comment or "")[:500], error_code=str(exc.code)),
            )  # fmt: skip
        raise


def _decide(
    *, request_id: uuid.UUID | str, tenant_id: int, actor: Actor, role: str, approve: bool, comment: str = "",
    now: datetime | None = None,
) -> ApprovalRequest:  # fmt: skip
    """Approve or reject a pending request as ``actor`` (a member of the tenant with
    ``role``); returns the request as it now is (still pending after the first of two
    approvals). Refused: E10354 not found (or another tenant's), E10355 decided, E10356
    expired, E10357 the same approver twice, E10358 a rejection without a comment, E10359
    a role below the request's (E10004 a viewer's)."""
    if ROLE_RANK.get(Role(role) if role in Role.values else Role.VIEWER, -1) < ROLE_RANK[Role.OPERATOR]:
        raise InterfaceError(ErrorCode.PERMISSION_DENIED)  # a viewer decides nothing, whatever it sent
    comment = (comment or "").strip()
    if len(comment) > MAX_COMMENT:
        raise _invalid("comment", f"at most {MAX_COMMENT:,} characters")
    if problem := text_problem(comment, multiline=True):
        raise _invalid("comment", problem)
    if not approve and not comment:
        raise InterfaceError(ErrorCode.APPROVAL_COMMENT_REQUIRED, details={"field": "comment"})
    now = now or timezone.now()
    with transaction.atomic():
        request = (
            ApprovalRequest.objects.select_for_update()
            .select_related("agent")
            .filter(pk=request_id, tenant_id=tenant_id)
            .first()
        )
        if request is None:
            raise InterfaceError(ErrorCode.APPROVAL_NOT_FOUND)
        if request.state != State.PENDING:
            raise _decided_already(request)
        if now >= request.expires_at:
            raise InterfaceError(
                ErrorCode.APPROVAL_EXPIRED,
                f"The request expired at {request.expires_at:%Y-%m-%d %H:%M:%S} UTC; it is being "
                f"{'approved' if request.on_timeout == OnTimeout.APPROVE else 'rejected'} by its timeout.",
            )
        if ROLE_RANK.get(Role(role), -1) < ROLE_RANK[Role(request.needs_role)]:
            raise InterfaceError(
                ErrorCode.APPROVAL_ROLE_REQUIRED if request.needs_role == Role.ADMIN else ErrorCode.PERMISSION_DENIED
            )
        if actor.user is None:
            raise InterfaceError(ErrorCode.AUTH_REQUIRED)
        votes = list(request.votes.all())
        if approve and any(v.user_id == actor.user.pk for v in votes):
            raise InterfaceError(ErrorCode.APPROVAL_SAME_APPROVER)
        if approve and len(votes) + 1 < request.needs_approvers:
            ApprovalVote.objects.create(
                request=request, user=actor.user, user_label=actor.label, comment=comment, at=now
            )
            audit_record(
                tenant_id=tenant_id, actor=actor, at=now,
                entry=Entry("approval.approve", "approval", str(request.pk), Outcome.SUCCESS, reason=comment,
                            delta={"action": request.action, "agent": request.agent.external_id,
                                   "approvals": f"{len(votes) + 1} of {request.needs_approvers}"}),
            )  # fmt: skip
            hub.publish(tenant_id, "approval.updated", said(request))
            return request
        request.state = State.APPROVED if approve else State.REJECTED
        request.decided_at = now
        request.decided_by = actor.user
        request.decided_by_label = actor.label
        request.comment = comment
        request.save(update_fields=["state", "decided_at", "decided_by", "decided_by_label", "comment"])
        approvers = [v.user_label for v in votes] + [actor.label] if approve else [actor.label]
        audit_record(
            tenant_id=tenant_id, actor=actor, at=now,
            entry=Entry(f"approval.{'approve' if approve else 'reject'}", "approval", str(request.pk),
                        Outcome.SUCCESS, reason=comment,
                        delta={"action": request.action, "agent": request.agent.external_id,
                               "summary": request.summary, "details": request.details,
                               "state": {"from": State.PENDING, "to": request.state}, "by": approvers}),
        )  # fmt: skip
        _record_decision(request, now)
    return request


def _record_decision(request: ApprovalRequest, now: datetime) -> None:
    agent = request.agent
    emit(
        request.tenant_id, f"approval.{request.state}", agent_id=agent.pk, external_id=agent.external_id,
        severity=Severity.INFO if request.state == State.APPROVED else Severity.WARNING,
        message=f"{request.action} {request.state} by {request.decided_by_label}"
        + (f": {request.comment}" if request.comment else ""),
        data={"approval_id": str(request.pk), "action": request.action, "approved": request.approved}, at=now,
    )  # fmt: skip
    hub.publish(request.tenant_id, "approval.decided", said(request, agent))


def expire_due(*, now: datetime | None = None, limit: int = 500) -> int:
    """Decide the pending requests past their time by their ``on_timeout``, oldest first,
    at most ``limit``; returns how many. A request someone is deciding at that moment is
    left for them (``skip_locked``): their decision is refused as expired, or this one
    comes next run."""
    now = now or timezone.now()
    done = 0
    due = list(
        ApprovalRequest.objects.filter(state=State.PENDING, expires_at__lte=now)
        .order_by("expires_at")
        .values_list("pk", flat=True)[:limit]
    )
    for pk in due:
        with transaction.atomic():
            request = (
                ApprovalRequest.objects.select_for_update(skip_locked=True)
                .select_related("agent")
                .filter(pk=pk, state=State.PENDING)
                .first()
            )
            if request is None:
                continue
            request.state = State.EXPIRED
            request.decided_at = now
            request.decided_by_label = "timeout"
            request.comment = (
                f"No decision within {_duration(request.expires_at - request.created_at)}: "
                f"{'approved' if request.on_timeout == OnTimeout.APPROVE else 'rejected'} by its timeout."
            )
            request.save(update_fields=["state", "decided_at", "decided_by_label", "comment"])
            audit_record(
                tenant_id=request.tenant_id, actor=SYSTEM, at=now,
                entry=Entry("approval.expire", "approval", str(request.pk), Outcome.SUCCESS, reason=request.comment,
                            delta={"action": request.action, "agent": request.agent.external_id,
                                   "summary": request.summary, "details": request.details,
                                   "on_timeout": request.on_timeout}),
            )  # fmt: skip
            _record_decision(request, now)
            done += 1
    return done


def _duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


# --- rules -------------------------------------------------------------------------------


def rule_add(
    *, tenant_id: int, actor: Actor, action: str = "*", selector: str = "", needs_role: str = Role.OPERATOR,
    needs_approvers: int = 1,
) -> ApprovalRule:  # fmt: skip
    """Add a rule (admins); audited as ``approval_rule.create``."""
    action = (action or "*").strip()
    if action != "*" and not ACTION.fullmatch(action.removesuffix("*") or "x"):
        raise _invalid("action", "an action (email.send), a prefix ending in * (deploy.*), or *")
    selector = (selector or "").strip()
    if selector:
        try:
            parse_selector(selector)
        except BadSelector as exc:
            raise _invalid("selector", str(exc)) from None
    if needs_role not in (Role.OPERATOR, Role.ADMIN):
        raise _invalid("needs_role", "operator or admin")
    if needs_approvers not in (1, 2):
        raise _invalid("needs_approvers", "1 or 2")
    with transaction.atomic():
        rule = ApprovalRule.objects.create(
            tenant_id=tenant_id, action=action, selector=selector, needs_role=needs_role,
            needs_approvers=needs_approvers,
        )  # fmt: skip
        audit_record(
            tenant_id=tenant_id, actor=actor,
            entry=Entry("approval_rule.create", "approval_rule", str(rule.pk), Outcome.SUCCESS,
                        delta={"action": action, "selector": selector, "needs_role": needs_role,
                               "needs_approvers": needs_approvers}),
        )  # fmt: skip
    return rule


def rule_remove(*, tenant_id: int, actor: Actor, rule_id: int) -> None:
    """Remove a rule (admins); audited as ``approval_rule.delete``. Requests asked under it
    keep who may decide them."""
    with transaction.atomic():
        rule = ApprovalRule.objects.select_for_update().filter(pk=rule_id, tenant_id=tenant_id).first()
        if rule is None:
            raise InterfaceError(ErrorCode.APPROVAL_RULE_NOT_FOUND)
        audit_record(
            tenant_id=tenant_id, actor=actor,
            entry=Entry("approval_rule.delete", "approval_rule", str(rule.pk), Outcome.SUCCESS,
                        delta={"action": rule.action, "selector": rule.selector, "needs_role": rule.needs_role,
                               "needs_approvers": rule.needs_approvers}),
        )  # fmt: skip
        rule.delete()
