"""Reads of the tenancy domain, always through the user's tenant membership."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from tenancy.access import AnyUser, membership_for
from tenancy.models import ApiToken, Role, Tenant


def get_token_for_user(user: AnyUser, tenant: Tenant, token_id: int, *, need: Role = Role.ADMIN) -> ApiToken:
    """The tenant's API token, if the user's role there is at least ``need``; else 404/403."""
    membership_for(user, tenant.pk, need=need)
    token = ApiToken.objects.filter(tenant=tenant, pk=token_id).first()
    if token is None:
        raise Http404("No such token.")
    return token


def tokens_of(tenant: Tenant) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(tenant=tenant).select_related("created_by").order_by("revoked_at", "-created_at")


def tenant_by_ref(ref: str | int) -> Tenant | None:
    """A tenant by its slug or its id (the Python API and the event socket name tenants so)."""
    text = str(ref).strip()
    found = Tenant.objects.filter(slug=text[:100])
    if text.isdigit():
        found = found | Tenant.objects.filter(pk=int(text))
    return found.first()
