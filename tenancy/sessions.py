"""How long a signed-in session lasts (docs/operations.md, "Sessions").

A session ends after ``L10_SESSION_IDLE_TIMEOUT`` seconds without a request, and in any
case ``L10_SESSION_MAX_AGE`` seconds after sign-in. The time of the last request is
written at most once per ``TOUCH_EVERY``, so pages that poll do not write the session on
every request; the idle limit is therefore kept to within that much.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

STARTED = "_l10_started"
SEEN = "_l10_seen"
TOUCH_EVERY = 60  # seconds


class SessionTimeoutMiddleware:
    """Signs out a session that was idle too long or is older than the maximum; the
    request then goes on as anonymous (a page redirects to sign-in)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if _signed_in(request):
            self._check(request)
        response = self.get_response(request)
        if _signed_in(request) and not isinstance(request.session.get(STARTED), int):
            # Signed in by this request: both clocks start now.
            request.session[STARTED] = request.session[SEEN] = int(timezone.now().timestamp())
        return response

    @staticmethod
    def _check(request: HttpRequest) -> None:
        session = request.session
        now = int(timezone.now().timestamp())
        started, seen = session.get(STARTED), session.get(SEEN)
        if not isinstance(started, int) or not isinstance(seen, int):
            # A session from before this rule: its clocks start here.
            session[STARTED] = session[SEEN] = now
            return
        if now - seen > settings.L10.session_idle_timeout or now - started > settings.L10.session_max_age:
            logout(request)
            return
        if now - seen >= TOUCH_EVERY:
            session[SEEN] = now


def _signed_in(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated)
