"""Failed-login throttling: after too many failures for a username (or, more loosely, an
address) within the lockout window, sign-in is refused until the window passes."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.cache import cache

# An address is shared by everyone behind one NAT: allow it more failures than one name.
ADDRESS_FACTOR = 4


def _keys(username: str, address: str) -> tuple[str, str]:
    name = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    return f"login-fail:user:{name}", f"login-fail:addr:{address}"


def is_locked(username: str, address: str) -> bool:
    limit = settings.L10.login_max_failures
    user_key, addr_key = _keys(username, address)
    counts = cache.get_many([user_key, addr_key])
    return counts.get(user_key, 0) >= limit or counts.get(addr_key, 0) >= limit * ADDRESS_FACTOR


def record_failure(username: str, address: str) -> None:
    window = settings.L10.login_lockout_seconds
    for key in _keys(username, address):
        if not cache.add(key, 1, timeout=window):
            try:
                cache.incr(key)
            except ValueError:  # expired in between
                cache.add(key, 1, timeout=window)


def clear(username: str) -> None:
    cache.delete(_keys(username, "")[0])
