"""How the JSON API authenticates: ``Authorization: Bearer <token>``, rate-limited per token.

- ``TenantToken`` (``l10_…``): a tenant's API token with the ``ingest`` scope, for agents
  and programs (ingest).
- ``PersonalBearer`` (``l10p_…``): a person's token with the ``control`` scope; it acts
  with that person's role.
- ``ReadBearer``: either kind with the ``read`` scope, told apart by the prefix as the
  event socket does (realtime/consumers.py); ``read_tenant`` names the tenant it reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest
from ninja.security import HttpBearer

from core import ratelimit
from core.errors import ErrorCode, InterfaceError
from core.tokens import PERSONAL_SCHEME, looks_like_token
from tenancy.models import ApiToken, Membership, PersonalToken, Scope
from tenancy.selectors import tenant_by_ref
from tenancy.services import personal_token_authenticate, token_authenticate


class _Bearer(HttpBearer):
    """A token of one kind, checked by ``check`` and counted in the ``kind`` rate limit."""

    kind: str
    scope: Scope
    check: Callable[..., Any]

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        if not token.strip():
            raise InterfaceError(ErrorCode.AUTH_REQUIRED)
        found = type(self).check(token, scope=self.scope)
        self.limit(request, found)
        return found

    def limit(self, request: HttpRequest, found: Any) -> None:
        """Count the call against the token's rate limit (which fails closed)."""
        ratelimit.enforce_per_token(self.kind, found.pk)


class TenantToken(_Bearer):
    """``Authorization: Bearer l10_…``: the tenant's token, rate-limited per token."""

    openapi_description = "A tenant API token, created by a tenant admin under Settings → API tokens."
    kind = "ingest"
    scope = Scope.INGEST
    check = staticmethod(token_authenticate)


class PersonalBearer(_Bearer):
    """``Authorization: Bearer l10p_…``: a person's token, rate-limited per token."""

    openapi_description = "A personal API token, created under Personal tokens; it acts with your role."
    kind = "control"
    scope = Scope.CONTROL
    check = staticmethod(personal_token_authenticate)


class ReadBearer(_Bearer):
    """``Authorization: Bearer l10_…`` or ``l10p_…`` with the ``read`` scope: a tenant's
    token reads its tenant, a person's the tenants its person belongs to (``read_tenant``).
    Each kind is checked as its own bearer checks it, and rate-limited per token in a count
    of its own, apart from ingest and control."""

    openapi_description = (
        "A tenant API token (l10_…) or a personal API token (l10p_…) with the read scope; "
        "a personal token names the tenant with tenant_id."
    )
    kind = "read"
    scope = Scope.READ

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | PersonalToken:
        if not token.strip():
            raise InterfaceError(ErrorCode.AUTH_REQUIRED)
        found: ApiToken | PersonalToken
        if looks_like_token(token, PERSONAL_SCHEME):
            found = personal_token_authenticate(token, scope=self.scope)
            ratelimit.enforce_per_token("read-personal", found.pk)
        else:
            found = token_authenticate(token, scope=self.scope)  # E10002 for anything else
            ratelimit.enforce_per_token(self.kind, found.pk)
        return found


def read_tenant(token: ApiToken | PersonalToken, ref: str, *, unnamed: ErrorCode) -> int:
    """The id of the tenant a ``ReadBearer`` token reads, named by ``ref`` (slug or id).

    A tenant's token reads its own tenant; ``ref`` may be left empty or name that tenant.
    A person's token reads a tenant its person belongs to; ``ref`` may be left empty when
    there is exactly one (a person of several tenants gets ``unnamed``, the calling list's
    code for a bad query, naming the field ``tenant_id``). A tenant the token may not read
    gets the answer of a tenant that does not exist (E10005), so whether it exists does
    not leak."""
    ref = ref.strip()
    if isinstance(token, ApiToken):
        if ref and getattr(tenant_by_ref(ref), "pk", None) != token.tenant_id:
            raise InterfaceError(ErrorCode.TENANT_NOT_FOUND)
        return int(token.tenant_id)
    memberships = Membership.objects.filter(user_id=token.user_id)
    if not ref:
        tenants = list(memberships.values_list("tenant_id", flat=True)[:2])
        if len(tenants) == 1:
            return int(tenants[0])
        if not tenants:
            raise InterfaceError(ErrorCode.TENANT_NOT_FOUND, "You belong to no tenant.")
        raise InterfaceError(
            unnamed,
            "You belong to several tenants: name one with tenant_id=<tenant slug or id>.",
            details={"field": "tenant_id"},
        )
    tenant = tenant_by_ref(ref)
    if tenant is None or not memberships.filter(tenant=tenant).exists():
        raise InterfaceError(ErrorCode.TENANT_NOT_FOUND)
    return int(tenant.pk)
