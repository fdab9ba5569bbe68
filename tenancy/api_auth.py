"""How the JSON API authenticates: ``Authorization: Bearer <token>``, rate-limited per token.

- ``TenantToken`` (``l10_…``): a tenant's API token with the ``ingest`` scope, for agents
  and programs (ingest).
- ``PersonalBearer`` (``l10p_…``): a person's token with the ``control`` scope; it acts
  with that person's role.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest
from ninja.security import HttpBearer

from core import ratelimit
from core.errors import ErrorCode, InterfaceError
from tenancy.models import Scope
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
