"""Writes of the tenancy domain: people's own API tokens."""

from __future__ import annotations

import functools
from datetime import timedelta

from django.contrib.auth.models import User
from django.utils import timezone

from l10console.errors import ErrorCode, InterfaceError
from l10console.lib.tokens import PERSONAL_SCHEME, hash_token, looks_like_token, new_token
from l10console.tenancy.models import PersonalToken

TOUCH_INTERVAL = timedelta(seconds=60)


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
    if not looks_like_token(plain, PERSONAL_SCHEME):
        raise InterfaceError(ErrorCode.TOKEN_INVALID)
    token = _token_by_hash(hash_token(plain))
    if token is None or not token.user.is_active:
        raise InterfaceError(ErrorCode.TOKEN_INVALID)
    if token.revoked_at is not None:
        raise InterfaceError(ErrorCode.TOKEN_REVOKED)
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > TOUCH_INTERVAL:
        PersonalToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


@functools.cache
def _token_statement() -> str:
    tokens, users = PersonalToken._meta.db_table, User._meta.db_table
    return (
        "SELECT k.*, u.username AS user_username, u.is_active AS user_is_active "  # noqa: S608 - constants only
        f"FROM {tokens} AS k JOIN {users} AS u ON u.id = k.user_id WHERE k.token_hash = %s"
    )


def _token_by_hash(digest: str) -> PersonalToken | None:
    """The token and its user in one plain statement: every control request authenticates,
    and compiling the ORM query cost more than running it. The user carries what a request
    needs (id, username, is_active)."""
    found = list(PersonalToken.objects.raw(_token_statement(), [digest]))
    if not found:
        return None
    token = found[0]
    token.user = User(id=token.user_id, username=token.user_username, is_active=bool(token.user_is_active))  # type: ignore[attr-defined]
    return token
