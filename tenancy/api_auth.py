"""How the JSON API authenticates: ``Authorization: Bearer <token>``, rate-limited per token.

- ``TenantToken`` (``l10_…``): a tenant's API token, for agents and programs (ingest).
- ``PersonalBearer`` (``l10p_…``): a person's token; it acts with that person's role.
"""

from __future__ import annotations

from django.http import HttpRequest
from ninja.security import HttpBearer

from core import ratelimit
from core.errors import ErrorCode, InterfaceError
from tenancy.models import ApiToken, PersonalToken
from tenancy.services import personal_token_authenticate, token_authenticate


class TenantToken(HttpBearer):
    """``Authorization: Bearer l10_…``: the tenant's token, rate-limited per token."""

    openapi_description = "A tenant API token, created by a tenant admin under Settings → API tokens."

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken:
        if not token.strip():
            raise InterfaceError(ErrorCode.AUTH_REQUIRED)
        api_token = token_authenticate(token)
        ratelimit.enforce_per_token("ingest", api_token.pk)
        return api_token


class PersonalBearer(HttpBearer):
    """``Authorization: Bearer l10p_…``: a person's token, rate-limited per token."""

    openapi_description = "A personal API token, created under Personal tokens; it acts with your role."

    def authenticate(self, request: HttpRequest, token: str) -> PersonalToken:
        if not token.strip():
            raise InterfaceError(ErrorCode.AUTH_REQUIRED)
        personal = personal_token_authenticate(token)
        ratelimit.enforce_per_token("control", personal.pk)
        return personal
