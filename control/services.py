"""Control operations: pause, resume, emergency stop, restart, quota.

One operation, step by step (docs/architecture.md, "A pause, from click to agent"):

1. Authorize: the actor's role in the agent's tenant, read from the database with the
   agent, allows the action.
2. Validate the request (a reason for a stop, a sane quota) and the idempotency key.
3. Idempotency: a key already answered replays its stored answer; the same key with
   another request is 422.
4. Lock the agent in Redis (``control.locks``): held by another operation → 409 at once.
5. One transaction: lock the agent's row and check its version has not moved since it
   was read (fencing: a lock that expired cannot overwrite a newer change), apply the
   state machine (``control.rules``), write the change with a version bump, write the
   audit row and the ``control.<action>`` event (``events.services.emit``), store the
   key with its answer.
6. After commit (in ``fleet.services``): publish ``control.action`` (which tells the
   agent's socket at once) and invalidate the tenant's cached pages.

The plain statements it runs on PostgreSQL are in ``control.sql``.

A refused or failed attempt changes nothing and leaves one audit row of its own.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.models import Outcome
from audit.services import SYSTEM, Actor, Entry, audit_record
from control import locks, sql
from control.models import IdempotencyRecord
from control.rules import NEEDS, Action, ControlRequest, ControlResult, ControlStatus, transition, validate
from core.errors import ErrorCode, InterfaceError
from events.models import Severity
from events.services import emit
from fleet import services as fleet_services
from fleet.models import Agent, DesiredState
from tenancy.models import Membership, Role, Tenant


class _Claimed(Exception):
    """The idempotency key was claimed by another request meanwhile; read its answer."""


def _caller(actor: Actor) -> str:
    return f"user:{actor.user.pk}" if actor.user is not None else "system"


def member_role(user_id: int, tenant_id: int) -> str | None:
    """The user's role in the tenant, None when not a member."""
    # order_by(): no join for Membership's default ordering.
    found = Membership.objects.filter(user_id=user_id, tenant_id=tenant_id).order_by().values_list("role", flat=True)
    return next(iter(found[:1]), None)


def authorize(tenant: Tenant, actor: Actor, action: Action) -> None:
    """The actor's role in the tenant, read from the database, allows the action (the
    system may do anything)."""
    _allow(tenant, actor, action, member_role(actor.user.pk, tenant.pk) if actor.user is not None else None)


def _allow(tenant: Tenant, actor: Actor, action: Action, role: str | None) -> None:
    if actor.user is None:
        return  # the system: expiries and undo run on behalf of the console
    if role is None:
        raise InterfaceError(ErrorCode.TENANT_NOT_FOUND, f"You are not a member of tenant {tenant.slug!r}.")
    if not Role(role).allows(NEEDS[action]):
        raise InterfaceError(
            ErrorCode.PERMISSION_DENIED, f"To {action} an agent needs the {NEEDS[action].label.lower()} role."
        )


def _no_agent(ref: object, where: str = "") -> InterfaceError:
    return InterfaceError(ErrorCode.AGENT_NOT_FOUND, f"No agent {str(ref)[:80]!r}{where}.")


def _target(actor: Actor, request: ControlRequest, tenant: Tenant | None) -> tuple[Agent, str | None]:
    """The agent the request names, with its tenant, and the actor's role there.

    With ``tenant`` (a page, the Python API, a batch), the agent must be that tenant's
    and may be named by its external id. Without (the JSON API), the agent's own tenant
    counts, and an agent of a tenant the actor does not belong to is as absent as one
    that does not exist.
    """
    user_id = actor.user.pk if actor.user is not None else None
    where = " in this tenant" if tenant is not None else ""
    try:
        agent_id = UUID(str(request.agent))
    except ValueError:
        if tenant is None:
            raise _no_agent(request.agent) from None
        found_id = Agent.objects.filter(tenant=tenant, external_id=str(request.agent)[:200]).values_list("pk").first()
        if found_id is None:
            raise _member_or(tenant, actor, _no_agent(request.agent, where)) from None
        agent_id = found_id[0]
    found = sql.target(agent_id, user_id)
    if found is None or (tenant is not None and found[0].tenant_id != tenant.pk):
        raise _member_or(tenant, actor, _no_agent(request.agent, where))
    agent, role = found
    if tenant is None and role is None and actor.user is not None:
        raise _no_agent(request.agent)
    return agent, role


def _member_or(tenant: Tenant | None, actor: Actor, error: InterfaceError) -> InterfaceError:
    """``error``, unless the actor is no member of the tenant it named: then E10005."""
    if tenant is not None and actor.user is not None and member_role(actor.user.pk, tenant.pk) is None:
        return InterfaceError(ErrorCode.TENANT_NOT_FOUND, f"You are not a member of tenant {tenant.slug!r}.")
    return error


def _pause_of(request: ControlRequest, now: datetime) -> fleet_services.Pause:
    until = request.pause_until
    if request.pause_minutes is not None:
        until = now + timedelta(minutes=request.pause_minutes)
    return fleet_services.Pause(reason=request.reason, until=until, mode=request.mode)


def _entry(request: ControlRequest, agent_ref: str, outcome: Outcome, **extra: Any) -> Entry:
    return Entry(
        action=f"agent.{request.action}",
        resource_type="agent",
        resource_id=agent_ref,
        outcome=outcome,
        reason=request.reason,
        idempotency_key=request.idempotency_key or "",
        batch_id=request.batch_id,
        **extra,
    )


def control_execute(
    *, actor: Actor, request: ControlRequest, tenant: Tenant | None = None, refusal: InterfaceError | None = None
) -> ControlResult:
    """Run one control operation; ``InterfaceError`` (E10xxx) when refused, with nothing
    changed and, once the agent's tenant is known, one audit row there saying why.

    ``tenant``: the tenant the caller acts in (the agent must be its own); without it,
    the agent's tenant, where the actor must be a member. The actor's role always comes
    from the database. ``refusal``: a refusal the caller decided before (the API's rate
    limiter could not reach Redis): raised once the agent and the actor's right to it are
    known, so it is audited like any other.
    """
    agent_ref = str(request.agent)[:64]
    audited = tenant  # where a refusal is recorded: the tenant named, else the agent's once known
    try:
        agent, role = _target(actor, request, tenant)
        audited = agent.tenant
        _allow(agent.tenant, actor, request.action, role)
        if refusal is not None:
            raise refusal
        return _execute(agent.tenant, actor, request, agent, agent_ref)
    except InterfaceError as exc:
        if audited is not None:
            outcome = Outcome.FAILED if exc.http_status >= 500 else Outcome.DENIED
            # Its own transaction: the refusal is recorded even though nothing else is.
            audit_record(
                tenant_id=audited.pk, actor=actor, entry=_entry(request, agent_ref, outcome, error_code=str(exc.code))
            )
        raise


def _replay(tenant: Tenant, actor: Actor, request: ControlRequest, agent: Agent) -> ControlResult | None:
    """The stored answer of the request's key; None when the key is new or its record has
    expired (the purge removes it later; until then a new request replaces it)."""
    if request.idempotency_key is None:
        return None
    record = sql.stored_answer(tenant.pk, _caller(actor), request.idempotency_key)
    if record is None or record.expires_at <= timezone.now():
        return None
    if record.fingerprint != request.fingerprint(agent.pk):
        raise InterfaceError(ErrorCode.CONTROL_IDEMPOTENCY_MISMATCH)
    return ControlResult(**{**record.response, "status": ControlStatus(record.response["status"])}, replayed=True)


def _execute(tenant: Tenant, actor: Actor, request: ControlRequest, agent: Agent, agent_ref: str) -> ControlResult:
    validate(request)
    replayed = _replay(tenant, actor, request, agent)
    if replayed is not None:
        return replayed
    try:
        token = locks.acquire(agent.pk)
    except locks.LockUnavailable:
        raise InterfaceError(
            ErrorCode.CONTROL_UNAVAILABLE, "The lock store (Redis) cannot be reached; nothing was changed."
        ) from None
    if token is None:
        raise InterfaceError(ErrorCode.CONTROL_LOCKED)
    try:
        # The fencing token: the version this operation decided from. A change that lands
        # after it was read (under an expired lock, or just before this one was taken) makes
        # the operation refuse (E10309) rather than overwrite what it did not see.
        try:
            return _apply(tenant, actor, request, agent, agent_ref, agent.version)
        except InterfaceError as exc:
            # The change it did not see may be this very request, run by a concurrent twin.
            if exc.code == ErrorCode.CONTROL_STALE and (replayed := _replay(tenant, actor, request, agent)):
                return replayed
            raise
        except _Claimed:
            replayed = _replay(tenant, actor, request, agent)
            if replayed is None:  # claimed and since expired: vanishingly rare; safe to retry
                raise InterfaceError(ErrorCode.CONTROL_IN_FLIGHT) from None
            return replayed
    finally:
        locks.release(agent.pk, token)


@transaction.atomic
def _apply(
    tenant: Tenant, actor: Actor, request: ControlRequest, agent: Agent, agent_ref: str, seen: int
) -> ControlResult:
    now = timezone.now()
    agent_id = agent.pk
    agent = sql.lock(agent)
    if agent.version != seen:
        raise InterfaceError(ErrorCode.CONTROL_STALE)
    result, delta = _change(agent, actor, request)
    outcome = Outcome.SUCCESS if result.status == ControlStatus.SUCCESS else Outcome.NOOP
    audit_id = audit_record(
        tenant_id=tenant.pk, actor=actor, entry=_entry(request, agent_ref, outcome, delta=delta), at=now
    )
    if outcome == Outcome.SUCCESS:
        _emit(agent, actor, request, delta, audit_id, now)
    # The key and its answer, in the transaction of the change: a concurrent request with
    # the same key waits here on the unique index, then finds it taken and this whole
    # transaction (its change too) is rolled back in favour of the stored answer.
    if request.idempotency_key is not None and not sql.claim(
        tenant.pk,
        _caller(actor),
        request.idempotency_key,
        request.fingerprint(agent_id),
        result.as_dict(),
        now,
        now + timedelta(seconds=settings.L10.control_idempotency_ttl),
    ):
        raise _Claimed
    return result


# The event store's word for a control action: its type, and how loud it is.
EVENT_SEVERITY: dict[str, str] = {Action.STOP: Severity.CRITICAL, Action.PAUSE: Severity.WARNING}


def _emit(
    agent: Agent, actor: Actor, request: ControlRequest, delta: dict[str, Any], audit_id: int, now: datetime
) -> None:
    by = actor.label
    emit(
        agent.tenant_id, f"control.{request.action}", agent_id=agent.pk, external_id=agent.external_id,
        severity=EVENT_SEVERITY.get(request.action, Severity.INFO),
        message=f"{request.action} of {agent.external_id} by {by}" + (f": {request.reason}" if request.reason else ""),
        data={"by": by, "reason": request.reason, "change": delta, "version": agent.version, "audit_id": audit_id,
              "batch_id": str(request.batch_id) if request.batch_id else None},
        at=now,
    )  # fmt: skip


def _change(agent: Agent, actor: Actor, request: ControlRequest) -> tuple[ControlResult, dict[str, Any]]:
    """Apply the request to the locked row."""
    previous = agent.desired_state
    if request.action == Action.QUOTA:
        quotas = {kind: dict(periods) for kind, periods in (agent.quotas or {}).items()}
        old_limit = quotas.get(str(request.quota_type), {}).get(request.period)
        if old_limit == request.new_limit:
            return _result(agent, request, ControlStatus.NOOP, previous, "The quota already has that limit."), {}
        quotas.setdefault(str(request.quota_type), {})[request.period] = int(request.new_limit)
        fleet_services.quotas_apply(agent=agent, quotas=quotas)
        delta = {f"quotas.{request.quota_type}.{request.period}": {"from": old_limit, "to": request.new_limit}}
        return _result(agent, request, ControlStatus.SUCCESS, previous, "New limit sent to the agent."), delta
    target, message = transition(agent, request.action)
    if target is None:
        return _result(agent, request, ControlStatus.NOOP, previous, message), {}
    fleet_services.desired_state_apply(
        agent=agent, state=DesiredState(target), actor=actor.user, pause=_pause_of(request, timezone.now())
    )
    return _result(agent, request, ControlStatus.SUCCESS, previous, message), {
        "desired_state": {"from": previous, "to": target}
    }


def _result(agent: Agent, request: ControlRequest, status: ControlStatus, previous: str, message: str) -> ControlResult:
    return ControlResult(
        status=status,
        action=str(request.action),
        agent_id=str(agent.pk),
        previous_state=previous,
        new_state=agent.desired_state,
        version=agent.version,
        message=message,
    )


PURGE_BATCH = 10_000
PURGE_MAX_BATCHES = 100


def idempotency_purge(*, now: datetime | None = None, max_batches: int = PURGE_MAX_BATCHES) -> int:
    """Delete expired idempotency records, in batches and at most ``max_batches`` of them
    per run (the next hourly run goes on); returns how many."""
    now = now or timezone.now()
    total = 0
    for _ in range(max_batches):
        expired = IdempotencyRecord.objects.filter(expires_at__lte=now).values_list("pk", flat=True)[:PURGE_BATCH]
        ids = list(expired)
        if not ids:
            break
        total += IdempotencyRecord.objects.filter(pk__in=ids).delete()[0]
    return total


def control_resume_expired(*, now: datetime | None = None) -> int:
    """Resume the agents whose timed pause is over, as the system; returns how many."""
    now = now or timezone.now()
    due = Agent.objects.filter(desired_state=DesiredState.PAUSED, pause_until__lte=now).select_related("tenant")
    resumed = 0
    for agent in due[:1000]:
        request = ControlRequest(Action.RESUME, str(agent.pk), reason="The timed pause ended.")
        try:
            result = control_execute(tenant=agent.tenant, actor=SYSTEM, request=request)
        except InterfaceError:
            continue  # locked or changed meanwhile: the next run looks again (and it is audited)
        resumed += result.status == ControlStatus.SUCCESS
    return resumed
