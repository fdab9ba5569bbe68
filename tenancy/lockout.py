"""Failed sign-ins, counted and locked out through django-axes (docs/operations.md,
"Sign-in lockout").

1. Failures are counted per pair (normalised username, address) and per address, in the
   cache (local memory in the embedded default, Redis in production), over a window of
   ``L10_LOGIN_LOCKOUT`` seconds from the first failure.
2. A pair is locked after ``L10_LOGIN_MAX_FAILURES`` failures; an address after
   ``ADDRESS_FACTOR`` times as many, whatever the names (one address may be a whole office
   behind a NAT). A stranger who guesses a person's name locks only that name from the
   stranger's own address: the person, elsewhere, still signs in.
3. Each lock of the same pair within ``STRIKES_MEMORY`` lasts twice as long as the one
   before: ``L10_LOGIN_LOCKOUT``, then 2×, 4×, … up to ``MAX_COOL_OFF``. A refused attempt
   during a lock is not counted, so retrying never extends it; a successful sign-in
   forgets the pair's failures and locks.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta
from typing import Any

from axes.handlers.base import AbstractAxesHandler, AxesBaseHandler
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_cache, get_client_ip_address, get_client_username
from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from tenancy.usernames import normalize_username

log = logging.getLogger(__name__)

ADDRESS_FACTOR = 4
MAX_COOL_OFF = timedelta(hours=24)
STRIKES_MEMORY = timedelta(hours=24)
THROTTLED_MESSAGE = "Too many failed sign-ins. Wait a few minutes, then try again."


# --- what axes is configured with (l10console/settings.py) -------------------------------


def failure_limit(request: HttpRequest | None = None, credentials: dict[str, Any] | None = None) -> int:
    """``AXES_FAILURE_LIMIT``: ``L10_LOGIN_MAX_FAILURES``, read when asked (tests change it)."""
    return int(settings.L10.login_max_failures)


def username(request: HttpRequest | None, credentials: dict[str, Any] | None = None) -> str:
    """``AXES_USERNAME_CALLABLE``: the name tried, normalised as users are stored."""
    raw = (credentials or {}).get("username")
    if raw is None and request is not None:
        raw = request.POST.get("username")
    return normalize_username(str(raw or "")[:150])


def cool_off(request: HttpRequest | None = None) -> timedelta:
    """``AXES_COOLOFF_TIME``: how long the request's pair is (or would next be) locked."""
    base = timedelta(seconds=settings.L10.login_lockout_seconds)
    if request is None:
        return base
    strikes = get_cache().get(_keys(request, None).strikes, 0)
    return _grown(base, max(1, strikes))


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict[str, Any] | None = None
) -> HttpResponse:
    """``AXES_LOCKOUT_CALLABLE``: the sign-in page with the throttle's message, 429 (the
    admin's sign-in gets it too when Django's ``authenticate`` was refused)."""
    form = AuthenticationForm(request, initial={"username": username(request, credentials)})
    context = {"form": form, "next": request.POST.get("next", ""), "error": THROTTLED_MESSAGE}
    return render(request, "tenancy/login.html", context, status=429)


def is_locked(request: HttpRequest, credentials: dict[str, Any]) -> bool:
    """Whether sign-in with ``credentials`` from this request is locked out now."""
    return bool(AxesProxyHandler.is_locked(request, credentials))


# --- the handler (AXES_HANDLER) ----------------------------------------------------------


def _grown(base: timedelta, strikes: int) -> timedelta:
    return min(base * (2 ** min(strikes - 1, 16)), MAX_COOL_OFF)


class _Keys:
    def __init__(self, name: str, address: str) -> None:
        pair = hashlib.sha256(f"{name}\0{address}".encode()).hexdigest()[:40]
        self.pair = f"l10-login:pair:{pair}"
        self.strikes = f"l10-login:strikes:{pair}"
        self.address = f"l10-login:addr:{hashlib.sha256(address.encode()).hexdigest()[:40]}"


def _keys(request: HttpRequest, credentials: dict[str, Any] | None) -> _Keys:
    address = getattr(request, "axes_ip_address", None) or get_client_ip_address(request) or ""
    return _Keys(get_client_username(request, credentials) or "", address)


class LoginLockoutHandler(AbstractAxesHandler, AxesBaseHandler):
    """Axes' cache handler, counting a pair and an address with limits of their own and
    growing the pair's cool-off with each lock (the module's docstring)."""

    @property
    def cache(self) -> Any:
        # Looked up each time, not kept: the cache may be reconfigured (tests point it elsewhere).
        return get_cache()

    def _bump(self, key: str, timeout: int) -> int:
        if self.cache.add(key, 1, timeout=timeout):
            return 1
        try:
            return int(self.cache.incr(key))
        except ValueError:  # expired in between
            self.cache.add(key, 1, timeout=timeout)
            return 1

    def get_failures(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> int:
        """The pair's failures, or the address's scaled down to the pair's limit, whichever
        is nearer its lock."""
        keys = _keys(request, credentials)
        counts = self.cache.get_many([keys.pair, keys.address])
        return max(int(counts.get(keys.pair, 0)), int(counts.get(keys.address, 0)) // ADDRESS_FACTOR)

    def user_login_failed(
        self, sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
    ) -> None:
        if request is None or self.is_whitelisted(request, credentials):
            return
        name = get_client_username(request, credentials)
        if self.is_locked(request, credentials):
            # Refused by axes' backend during a lock: not counted, the lock is not extended.
            request.axes_locked_out = True  # type: ignore[attr-defined]
            request.axes_credentials = credentials  # type: ignore[attr-defined]
            return
        keys = _keys(request, credentials)
        window = int(settings.L10.login_lockout_seconds)
        pair_failures = self._bump(keys.pair, window)
        address_failures = self._bump(keys.address, window)
        request.axes_failures_since_start = pair_failures  # type: ignore[attr-defined]
        limit = failure_limit(request, credentials)
        if pair_failures >= limit:
            strikes = self._bump(keys.strikes, int(STRIKES_MEMORY.total_seconds()))
            self.cache.touch(keys.strikes, int(STRIKES_MEMORY.total_seconds()))
            lock = _grown(timedelta(seconds=window), strikes)
            self.cache.touch(keys.pair, int(lock.total_seconds()))
            log.warning("sign-in locked for a name from %s for %s (lock %d)", request.axes_ip_address, lock, strikes)  # type: ignore[attr-defined]
            user_locked_out.send("axes", request=request, username=name, ip_address=request.axes_ip_address)  # type: ignore[attr-defined]
        elif address_failures >= limit * ADDRESS_FACTOR:
            log.warning("sign-in locked for every name from %s", request.axes_ip_address)  # type: ignore[attr-defined]
            user_locked_out.send("axes", request=request, username=None, ip_address=request.axes_ip_address)  # type: ignore[attr-defined]

    def user_logged_in(self, sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
        """A successful sign-in forgets the pair's failures and locks (not the address's)."""
        if request is None or not hasattr(request, "POST"):
            return
        keys = _keys(request, {"username": user.get_username()})
        self.cache.delete_many([keys.pair, keys.strikes])

    def user_logged_out(self, sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
        return None

    def reset_attempts(
        self, *, ip_address: str | None = None, username: str | None = None, ip_or_username: bool = False
    ) -> int:
        """``axes_reset_ip`` and ``axes_reset_ip_username``; a name alone cannot be found in a
        cache without its address."""
        if ip_or_username or ip_address is None:
            raise NotImplementedError("Reset by address, or by address and username.")
        keys = _Keys(normalize_username(username or ""), ip_address)
        doomed = [keys.address] if username is None else [keys.pair, keys.strikes]
        found = sum(1 for key in doomed if self.cache.get(key) is not None)
        self.cache.delete_many(doomed)
        return found
