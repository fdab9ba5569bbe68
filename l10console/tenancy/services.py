"""Writes of the tenancy domain: people's own API tokens."""

from __future__ import annotations

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
    token = PersonalToken.objects.select_related("user").filter(token_hash=hash_token(plain)).first()
    if token is None or not token.user.is_active:
        raise InterfaceError(ErrorCode.TOKEN_INVALID)
    if token.revoked_at is not None:
        raise InterfaceError(ErrorCode.TOKEN_REVOKED)
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > TOUCH_INTERVAL:
        PersonalToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
