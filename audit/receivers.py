"""What the audit trail hears from the parts below it (docs/audit.md, "What is recorded"):
sign-ins, sign-outs and failed sign-ins (Django's signals), API tokens made and revoked
(``tenancy.signals.token_changed``), and changes made in Django admin
(``audit.admin_audit.AuditedAdmin``). Each becomes an entry in the trail of every tenant
it concerns: a person's sign-in in each tenant they belong to, a tenant's token in that
tenant's. What concerns no tenant (a name nobody has, a staff member of no tenant) goes to
the platform's own trail, which platform staff read in Django admin."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth.models import User
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from audit.context import current_actor
from audit.models import Outcome
from audit.services import Actor, Entry, audit_record, request_actor
from core.errors import ErrorCode
from core.inputs import printable
from tenancy.models import ApiToken, Membership, PersonalToken
from tenancy.signals import token_changed
from tenancy.usernames import normalize_username


def tenants_of(user: User | None) -> list[int | None]:
    """The tenants whose trail a person's own action goes to: each they belong to, or the
    platform's when none."""
    found: list[int | None] = []
    if user is not None:
        found += list(Membership.objects.filter(user=user).order_by("tenant_id").values_list("tenant_id", flat=True))
    return found or [None]


def record_in(tenants: Iterable[int | None], actor: Actor, entry: Entry) -> None:
    for tenant_id in tenants:
        audit_record(tenant_id=tenant_id, actor=actor, entry=entry)


@receiver(user_logged_in, dispatch_uid="audit-login")
def signed_in(sender: Any, request: HttpRequest, user: User, **kwargs: Any) -> None:
    entry = Entry(
        action="auth.login", resource_type="user", resource_id=user.get_username()[:64], outcome=Outcome.SUCCESS
    )
    record_in(tenants_of(user), request_actor(request, user), entry)


@receiver(user_logged_out, dispatch_uid="audit-logout")
def signed_out(sender: Any, request: HttpRequest, user: User | None, **kwargs: Any) -> None:
    if user is None:  # the session had already ended
        return
    entry = Entry(
        action="auth.logout", resource_type="user", resource_id=user.get_username()[:64], outcome=Outcome.SUCCESS
    )
    record_in(tenants_of(user), request_actor(request, user), entry)


@receiver(user_login_failed, dispatch_uid="audit-login-failed")
def sign_in_failed(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any) -> None:
    """A wrong password for a known name goes to that person's tenants; a name nobody has,
    to the platform's trail. The actor is "anonymous": nobody was signed in."""
    name = normalize_username(str(credentials.get("username") or "")[:150])
    user = User.objects.filter(username=name).first() if name else None
    entry = Entry(
        action="auth.login", resource_type="user", resource_id=printable(name[:64]) or "-", outcome=Outcome.DENIED,
        error_code=str(ErrorCode.LOGIN_FAILED),
    )  # fmt: skip
    here = current_actor(None) if request is None else request_actor(request)
    actor = Actor(user=None, ip=here.ip, user_agent=here.user_agent, request_id=here.request_id, name="anonymous")
    record_in(tenants_of(user), actor, entry)


@receiver(token_changed, dispatch_uid="audit-token")
def token_made_or_revoked(
    sender: Any, token: ApiToken | PersonalToken, change: str, by: User | None, **kwargs: Any
) -> None:
    kind = "api_token" if isinstance(token, ApiToken) else "personal_token"
    if change == "created":
        action, outcome = "token.create", Outcome.SUCCESS
        delta: dict[str, Any] = {
            "name": token.name, "scopes": sorted(token.scopes),
            "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        }  # fmt: skip
    else:
        action, outcome = "token.revoke", Outcome.SUCCESS if change == "revoked" else Outcome.NOOP
        delta = {"name": token.name}
        if change == "revoked" and token.revoked_at:
            delta["revoked_at"] = {"from": None, "to": token.revoked_at.isoformat()}
    entry = Entry(action=action, resource_type=kind, resource_id=str(token.pk), outcome=outcome, delta=delta)
    tenants = [token.tenant_id] if isinstance(token, ApiToken) else tenants_of(token.user)
    record_in(tenants, current_actor(by), entry)
