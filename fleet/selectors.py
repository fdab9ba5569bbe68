"""Reads of the fleet domain, always through the user's tenant membership."""

from __future__ import annotations

from uuid import UUID

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404

from fleet.models import Agent, ApiToken
from l10console.tenancy.access import AnyUser, membership_for
from l10console.tenancy.models import Role, Tenant


def get_agent_for_user(
    user: AnyUser, agent_id: UUID | str, *, need: Role = Role.VIEWER, tenant: Tenant | None = None
) -> Agent:
    """The agent, if the user's role in its tenant is at least ``need``; else 404/403.

    With ``tenant``, an agent of another tenant is a 404 even if the user belongs to both
    (a URL under one tenant never shows another's agent).
    """
    try:
        agent = Agent.objects.select_related("tenant", "desired_changed_by").get(pk=agent_id)
    except (Agent.DoesNotExist, ValueError, TypeError, ValidationError):
        raise Http404("No such agent.") from None
    if tenant is not None and agent.tenant_id != tenant.pk:
        raise Http404("No such agent in this tenant.")
    membership_for(user, agent.tenant_id, need=need)
    return agent


def get_token_for_user(user: AnyUser, tenant: Tenant, token_id: int, *, need: Role = Role.ADMIN) -> ApiToken:
    membership_for(user, tenant.pk, need=need)
    token = ApiToken.objects.filter(tenant=tenant, pk=token_id).first()
    if token is None:
        raise Http404("No such token.")
    return token


def tokens_of(tenant: Tenant) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(tenant=tenant).select_related("created_by").order_by("revoked_at", "-created_at")
