"""Reads of the tenancy domain, always through the user's tenant membership."""

from __future__ import annotations

from importlib import import_module

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone

from core.inputs import text_problem
from tenancy.access import AnyUser, membership_for
from tenancy.models import ApiToken, Membership, PersonalToken, Role, Tenant
from tenancy.signals import EXPIRED, REVOKED, SIGNED_OUT, session_principal


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
    if text_problem(text):  # no such slug; and PostgreSQL could not even compare it
        return None
    found = Tenant.objects.filter(slug=text[:100])
    if text.isascii() and text.isdigit() and len(text) <= 18:  # a bigint holds 18 digits
        found = found | Tenant.objects.filter(pk=int(text))
    return found.first()


def grant_ended(principal: str, *, session_key: str | None = None) -> str | None:
    """Why the grant ``principal`` (``tenancy.signals``) no longer holds, as
    ``access_revoked`` would say it (revoked, expired, signed out), or None while it holds.
    For a session, ``session_key`` is the key its socket authenticated with."""
    kind, _, rest = principal.partition(":")
    if kind in ("api-token", "personal-token"):
        if not rest.isdigit():
            return REVOKED
        if kind == "api-token":
            row = ApiToken.objects.filter(pk=int(rest)).values_list("revoked_at", "expires_at").first()
        else:
            row = (
                PersonalToken.objects.filter(pk=int(rest), user__is_active=True)
                .values_list("revoked_at", "expires_at")
                .first()
            )
        if row is None or row[0] is not None:
            return REVOKED
        return EXPIRED if row[1] is not None and row[1] <= timezone.now() else None
    if kind == "member":
        user_id, _, tenant_id = rest.partition(":")
        if not (user_id.isdigit() and tenant_id.isdigit()):
            return REVOKED
        held = Membership.objects.filter(user_id=int(user_id), tenant_id=int(tenant_id), user__is_active=True)
        return None if held.exists() else REVOKED
    if kind == "session":
        user_id = rest.partition(":")[0]
        if not session_key or not user_id.isdigit() or session_principal(int(user_id), session_key) != principal:
            return SIGNED_OUT
        store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
        # Signed out, or expired: the store no longer holds that person under that key.
        return None if str(store.get(SESSION_KEY)) == user_id else SIGNED_OUT
    return None
