"""How the JSON API authenticates: ``Authorization: Bearer <token>``, rate-limited per token.

- ``TenantToken`` (``l10_…``): a tenant's API token, for agents and programs (ingest).
- ``PersonalBearer`` (``l10p_…``): a person's token; it acts with that person's role.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest
from ninja.security import HttpBearer

from core import ratelimit
from core.errors import ErrorCode, InterfaceError
from tenancy.services import personal_token_authenticate, token_authenticate


class _Bearer(HttpBearer):
    """A token of one kind, checked by ``check`` and counted in the ``kind`` rate limit."""

    kind: str
    check: Callable[[str], Any]

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        if not token.strip():
            raise InterfaceError(ErrorCode.AUTH_REQUIRED)
        found = type(self).check(token)
        ratelimit.enforce_per_token(self.kind, found.pk)
        return found


class TenantToken(_Bearer):
    """``Authorization: Bearer l10_…``: the tenant's token, rate-limited per token."""

    openapi_description = "A tenant API token, created by a tenant admin under Settings → API tokens."
    kind = "ingest"
    check = staticmethod(token_authenticate)


class PersonalBearer(_Bearer):
    """``Authorization: Bearer l10p_…``: a person's token, rate-limited per token."""

    openapi_description = "A personal API token, created under Personal tokens; it acts with your role."
    kind = "control"
    check = staticmethod(personal_token_authenticate)
