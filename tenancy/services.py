"""Writes of the tenancy domain: a tenant's API tokens (agents and programs) and people's
own API tokens. Only a SHA-256 of a token is stored; its plain text is shown once.

A token carries scopes and may expire (docs/api.md, "Token scopes and expiry"): each
endpoint names the scope it needs, and the check refuses, in this order, an unknown token
(E10002), a revoked one (E10003), an expired one (E10007), one without the scope (E10008)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TypeVar

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from core.errors import ErrorCode, InterfaceError
from core.inputs import text_problem
from core.tokens import PERSONAL_SCHEME, hash_token, looks_like_token, new_token
from tenancy import sql
from tenancy.models import ApiToken, PersonalToken, Scope, Tenant, Token, scope_text
from tenancy.signals import REVOKED, access_revoked, api_token_principal, personal_token_principal, token_changed

# last_used_at is refreshed at most this often, so a busy token does not write per request.
TOUCH_INTERVAL = timedelta(seconds=60)
# The longest expiry a token may be given, in days (ten years).
MAX_EXPIRY_DAYS = 3650


def _token_name(name: str, missing: str) -> str:
    """The name as stored; ValueError when there is none, or it holds a control character
    (the rules of core/inputs.py, for callers that are not a form)."""
    name = name.strip()
    if not name:
        raise ValueError(missing)
    problem = text_problem(name)
    if problem:
        raise ValueError(f"The name {problem}.")
    return name


def _scopes_and_expiry(
    kind: type[Token], scopes: Iterable[str] | None, expires_in_days: int | None
) -> tuple[str, datetime | None]:
    """The stored scopes and ``expires_at`` of a new token; ValueError says what is wrong."""
    chosen = set(kind.DEFAULT_SCOPES if scopes is None else scopes)
    unknown = chosen - set(kind.ALLOWED_SCOPES)
    if unknown:
        allowed = ", ".join(sorted(kind.ALLOWED_SCOPES))
        raise ValueError(f"Unknown scope {', '.join(sorted(unknown))}; this token may have: {allowed}.")
    if not chosen:
        raise ValueError("Choose at least one scope.")
    if expires_in_days is None:
        return scope_text(chosen), None
    if not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
        raise ValueError(f"Expiry must be 1 to {MAX_EXPIRY_DAYS} days, or empty for a token that does not expire.")
    return scope_text(chosen), timezone.now() + timedelta(days=expires_in_days)


# --- a tenant's API tokens ---------------------------------------------------------------


def token_create(
    *,
    tenant: Tenant,
    name: str,
    created_by: User | None,
    scopes: Iterable[str] | None = None,
    expires_in_days: int | None = None,
) -> tuple[ApiToken, str]:
    """Create a token and return it with its plain text, which is shown once and never stored.
    Without ``scopes`` it may ingest and read; without ``expires_in_days`` it never expires."""
    name = _token_name(name, "Give the token a name, e.g. the fleet or host that will use it.")
    stored_scopes, expires_at = _scopes_and_expiry(ApiToken, scopes, expires_in_days)
    made = new_token()
    token = ApiToken.objects.create(
        tenant=tenant,
        name=name[:100],
        prefix=made.prefix,
        token_hash=made.digest,
        created_by=created_by,
        scopes=stored_scopes,
        expires_at=expires_at,
    )
    token_changed.send(sender=ApiToken, token=token, change="created", by=created_by)
    return token, made.plain


def token_revoke(*, token: ApiToken, by: User | None = None) -> bool:
    """Revoke a token; False if it already was. Either way, once committed, what the token
    still holds open (sockets) is ended: ``tenancy.signals.access_revoked``."""
    changed = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    token.refresh_from_db(fields=["revoked_at"])
    token_changed.send(sender=ApiToken, token=token, change="revoked" if changed else "unchanged", by=by)
    _announce_revoked(ApiToken, api_token_principal(token.pk))
    return bool(changed)


def _announce_revoked(kind: type[Token], principal: str) -> None:
    # Also when it already was revoked: saying it again is harmless, and ends anything a
    # lost announcement left open. Robust: the revocation itself has committed.
    transaction.on_commit(lambda: access_revoked.send(sender=kind, principals=[principal], reason=REVOKED), robust=True)


def token_authenticate(plain: str, *, scope: Scope) -> ApiToken:
    """The active token for this plain text, with its tenant, if it carries ``scope``;
    InterfaceError otherwise."""
    found = sql.api_token_by_hash(hash_token(plain)) if looks_like_token(plain) else None
    return _active(found, scope)


# --- people's own API tokens -------------------------------------------------------------


def personal_token_create(
    *, user: User, name: str, scopes: Iterable[str] | None = None, expires_in_days: int | None = None
) -> tuple[PersonalToken, str]:
    """Create a token for ``user``; the plain text is returned once and never stored.
    Without ``scopes`` it may read and control; without ``expires_in_days`` it never expires."""
    name = _token_name(name, "Give the token a name, e.g. the script or laptop that will use it.")
    stored_scopes, expires_at = _scopes_and_expiry(PersonalToken, scopes, expires_in_days)
    made = new_token(PERSONAL_SCHEME)
    token = PersonalToken.objects.create(
        user=user,
        name=name[:100],
        prefix=made.prefix,
        token_hash=made.digest,
        scopes=stored_scopes,
        expires_at=expires_at,
    )
    token_changed.send(sender=PersonalToken, token=token, change="created", by=user)
    return token, made.plain


def personal_token_revoke(*, token: PersonalToken, by: User | None = None) -> bool:
    """Revoke a person's token; False if it already was. As ``token_revoke``, its sockets end."""
    changed = PersonalToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    token.refresh_from_db(fields=["revoked_at"])
    token_changed.send(sender=PersonalToken, token=token, change="revoked" if changed else "unchanged", by=by)
    _announce_revoked(PersonalToken, personal_token_principal(token.pk))
    return bool(changed)


def personal_token_authenticate(plain: str, *, scope: Scope) -> PersonalToken:
    """The active token for this plain text, with its (active) user, if it carries
    ``scope``; InterfaceError otherwise."""
    found = sql.personal_token_by_hash(hash_token(plain)) if looks_like_token(plain, PERSONAL_SCHEME) else None
    return _active(None if found is None or not found.user.is_active else found, scope)


T = TypeVar("T", ApiToken, PersonalToken)


def _active(token: T | None, scope: Scope) -> T:
    """The token found, if not revoked, not expired and carrying ``scope`` (E10002,
    E10003, E10007, E10008); its last use recorded at most once per ``TOUCH_INTERVAL``."""
    if token is None:
        raise InterfaceError(ErrorCode.TOKEN_INVALID)
    if token.revoked_at is not None:
        raise InterfaceError(ErrorCode.TOKEN_REVOKED)
    now = timezone.now()
    if token.is_expired(now):
        raise InterfaceError(ErrorCode.TOKEN_EXPIRED)
    if not token.has_scope(scope):
        raise InterfaceError(
            ErrorCode.TOKEN_SCOPE_MISSING,
            f"This needs a token with the {scope.value!r} scope; this one has: {', '.join(token.scope_list)}.",
        )
    if token.last_used_at is None or now - token.last_used_at > TOUCH_INTERVAL:
        type(token)._default_manager.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
