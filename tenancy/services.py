"""Writes of the tenancy domain: a tenant's API tokens (agents and programs) and people's
own API tokens. Only a SHA-256 of a token is stored; its plain text is shown once."""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from django.contrib.auth.models import User
from django.utils import timezone

from core.errors import ErrorCode, InterfaceError
from core.tokens import PERSONAL_SCHEME, hash_token, looks_like_token, new_token
from tenancy import sql
from tenancy.models import ApiToken, PersonalToken, Tenant

# last_used_at is refreshed at most this often, so a busy token does not write per request.
TOUCH_INTERVAL = timedelta(seconds=60)


# --- a tenant's API tokens ---------------------------------------------------------------


def token_create(*, tenant: Tenant, name: str, created_by: User | None) -> tuple[ApiToken, str]:
    """Create a token and return it with its plain text, which is shown once and never stored."""
    name = name.strip()
    if not name:
        raise ValueError("Give the token a name, e.g. the fleet or host that will use it.")
    made = new_token()
    token = ApiToken.objects.create(
        tenant=tenant, name=name[:100], prefix=made.prefix, token_hash=made.digest, created_by=created_by
    )
    return token, made.plain


def token_revoke(*, token: ApiToken) -> bool:
    """Revoke a token; False if it already was."""
    changed = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    token.refresh_from_db(fields=["revoked_at"])
    return bool(changed)


def token_authenticate(plain: str) -> ApiToken:
    """The active token for this plain text, with its tenant; InterfaceError otherwise."""
    found = sql.api_token_by_hash(hash_token(plain)) if looks_like_token(plain) else None
    return _active(found)


# --- people's own API tokens -------------------------------------------------------------


def personal_token_create(*, user: User, name: str) -> tuple[PersonalToken, str]:
    """Create a token for ``user``; the plain text is returned once and never stored."""
    name = name.strip()
    if not name:
        raise ValueError("Give the token a name, e.g. the script or laptop that will use it.")
    made = new_token(PERSONAL_SCHEME)
    token = PersonalToken.objects.create(user=user, name=name[:100], prefix=made.prefix, token_hash=made.digest)
    return token, made.plain


def personal_token_revoke(*, token: PersonalToken) -> bool:
    changed = PersonalToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    return bool(changed)


def personal_token_authenticate(plain: str) -> PersonalToken:
    """The active token for this plain text, with its (active) user; InterfaceError otherwise."""
    found = sql.personal_token_by_hash(hash_token(plain)) if looks_like_token(plain, PERSONAL_SCHEME) else None
    return _active(None if found is None or not found.user.is_active else found)


T = TypeVar("T", ApiToken, PersonalToken)


def _active(token: T | None) -> T:
    """The token found, if not revoked (E10002 / E10003); its last use recorded at most
    once per ``TOUCH_INTERVAL``."""
    if token is None:
        raise InterfaceError(ErrorCode.TOKEN_INVALID)
    if token.revoked_at is not None:
        raise InterfaceError(ErrorCode.TOKEN_REVOKED)
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > TOUCH_INTERVAL:
        type(token)._default_manager.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
