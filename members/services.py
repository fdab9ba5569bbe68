"""A tenant's members: who may use it, and in which role.

Every change is audited in its own transaction, so the change and its audit row commit
together; a refused change is audited too, after its transaction rolled back. A tenant
keeps at least one admin: the guard reads the tenant's admin memberships under a row
lock, so two admins demoting or removing each other at once cannot both succeed. A
removed member's open sockets on the tenant close once the removal has committed
(``tenancy.signals.member_principal``).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import transaction

from audit.models import Outcome
from audit.services import Actor, Entry, audit_record
from core.errors import ErrorCode, InterfaceError
from core.inputs import text_problem
from tenancy.models import Membership, Role, Tenant
from tenancy.signals import REVOKED, access_revoked, member_principal
from tenancy.usernames import normalize_username

RESOURCE = "membership"


@dataclass(frozen=True)
class Change:
    """What an audit row records of one member change."""

    action: str
    user_id: str
    delta: dict[str, dict[str, str | None]]


def _role(value: str) -> Role:
    if value not in Role.values:
        raise InterfaceError(
            ErrorCode.MEMBER_INVALID, f"Unknown role {value[:20]!r}; choose viewer, operator or admin."
        )
    return Role(value)


def _user(username: str) -> User:
    name = username.strip()
    problem = text_problem(name) if name else "is empty"
    if problem:
        raise InterfaceError(ErrorCode.MEMBER_INVALID, f"The username {problem}.")
    # Stored in one spelling (tenancy.usernames): "ＡＬＩＣＥ" and "Alice" name alice.
    found = User.objects.filter(username=normalize_username(name)[:150], is_active=True).first()
    if found is None:
        raise InterfaceError(
            ErrorCode.MEMBER_INVALID,
            f"No active account is named {name[:150]!r}. A platform admin creates accounts; add the person then.",
        )
    return found


def _guard_admins(tenant: Tenant, leaving: Membership) -> None:
    """Refuse (E10012) when ``leaving`` is the tenant's last admin. Locks every admin
    membership of the tenant until the transaction ends."""
    admins = list(
        Membership.objects.select_for_update().filter(tenant=tenant, role=Role.ADMIN).values_list("pk", flat=True)
    )
    if leaving.role == Role.ADMIN and admins == [leaving.pk]:
        raise InterfaceError(
            ErrorCode.LAST_ADMIN,
            f"{leaving.user.get_username()} is the last admin of {tenant.name}; make another member an admin first.",
        )


def _member(tenant: Tenant, user_id: int) -> Membership:
    found = Membership.objects.select_for_update().select_related("user").filter(tenant=tenant, user_id=user_id).first()
    if found is None:
        raise InterfaceError(ErrorCode.MEMBER_INVALID, "That person is not a member of this tenant.")
    return found


def _record(
    tenant: Tenant, actor: Actor, change: Change, outcome: Outcome, error: InterfaceError | None = None
) -> None:
    entry = Entry(
        action=change.action,
        resource_type=RESOURCE,
        resource_id=change.user_id,
        outcome=outcome,
        delta=change.delta,
        error_code=str(error.code) if error else "",
        reason=error.message if error else "",
    )
    audit_record(tenant_id=tenant.pk, actor=actor, entry=entry)


def member_add(*, tenant: Tenant, username: str, role: str, actor: Actor) -> Membership:
    """Give the person with this account a role in the tenant (E10011 if there is no such
    active account, or they already are a member)."""
    attempt = Change("member.add", username.strip()[:64], {"role": {"from": None, "to": role[:20]}})
    try:
        with transaction.atomic():
            chosen, user = _role(role), _user(username)
            attempt = Change("member.add", str(user.pk), {"role": {"from": None, "to": chosen.value}})
            membership, created = Membership.objects.get_or_create(tenant=tenant, user=user, defaults={"role": chosen})
            if not created:
                raise InterfaceError(
                    ErrorCode.MEMBER_INVALID,
                    f"{user.get_username()} already is a member ({membership.get_role_display().lower()}); "
                    "change their role instead.",
                )
            _record(tenant, actor, attempt, Outcome.SUCCESS)
            return membership
    except InterfaceError as exc:
        _record(tenant, actor, attempt, Outcome.DENIED, exc)
        raise


def member_role_set(*, tenant: Tenant, user_id: int, role: str, actor: Actor) -> Membership:
    """Change a member's role; the last admin keeps theirs (E10012)."""
    attempt = Change("member.role", str(user_id), {"role": {"from": None, "to": role[:20]}})
    try:
        with transaction.atomic():
            chosen = _role(role)
            membership = _member(tenant, user_id)
            attempt = Change("member.role", str(user_id), {"role": {"from": membership.role, "to": chosen.value}})
            if membership.role == chosen:
                _record(tenant, actor, attempt, Outcome.NOOP)
                return membership
            if chosen != Role.ADMIN:
                _guard_admins(tenant, membership)
            membership.role = chosen
            membership.save(update_fields=["role"])
            _record(tenant, actor, attempt, Outcome.SUCCESS)
            return membership
    except InterfaceError as exc:
        _record(tenant, actor, attempt, Outcome.DENIED, exc)
        raise


def member_remove(*, tenant: Tenant, user_id: int, actor: Actor) -> None:
    """Remove a member; the last admin stays (E10012). Their sockets on the tenant close
    once this commits."""
    attempt = Change("member.remove", str(user_id), {"role": {"from": None, "to": None}})
    try:
        with transaction.atomic():
            membership = _member(tenant, user_id)
            attempt = Change("member.remove", str(user_id), {"role": {"from": membership.role, "to": None}})
            _guard_admins(tenant, membership)
            membership.delete()
            _record(tenant, actor, attempt, Outcome.SUCCESS)
            principal = member_principal(user_id, tenant.pk)
            transaction.on_commit(
                lambda: access_revoked.send(sender=Membership, principals=[principal], reason=REVOKED), robust=True
            )
    except InterfaceError as exc:
        _record(tenant, actor, attempt, Outcome.DENIED, exc)
        raise
