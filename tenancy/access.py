"""Tenant access checks: another tenant's object is a 404, too low a role a 403.

Every view fetches through a helper built on these; nothing reads a tenant object by id
alone.
"""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404

from tenancy import sql
from tenancy.models import Membership, Role

AnyUser = User | AnonymousUser


def _memberships(user: AnyUser) -> QuerySet[Membership]:
    if not user.is_authenticated:
        return Membership.objects.none()
    return Membership.objects.select_related("tenant").filter(user_id=user.pk)


def checked(membership: Membership | None, need: Role) -> Membership:
    if membership is None:
        raise Http404("No such tenant.")
    if not membership.allows(need):
        raise PermissionDenied(f"This needs the {need.label.lower()} role in {membership.tenant.name}.")
    return membership


def membership_for(user: AnyUser, tenant_id: int, *, need: Role = Role.VIEWER) -> Membership:
    """The user's membership in the tenant; 404 if none, 403 if its role is below ``need``."""
    return checked(_memberships(user).filter(tenant_id=tenant_id).first(), need)


def choose_membership(memberships: list[Membership], slug: str, *, need: Role = Role.VIEWER) -> Membership:
    """The membership for ``slug`` among the user's own (as ``memberships_of`` lists them)."""
    return checked(next((m for m in memberships if m.tenant.slug == slug), None), need)


def memberships_of(user: AnyUser) -> list[Membership]:
    """The user's memberships with their tenants, by tenant name (one statement: every
    tenant page reads them)."""
    if not user.is_authenticated:
        return []
    return sql.memberships_of(user.pk)
