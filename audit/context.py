"""Where the current request came from, for entries written far from any view: a token
revoked by a service, a change made in Django admin. ``AuditContextMiddleware`` keeps the
request's address, client and request id for as long as it runs (a context variable:
each thread and task sees its own)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from contextvars import ContextVar

from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponseBase

from audit.services import SYSTEM, Actor
from core.http import client_ip

_current: ContextVar[Actor | None] = ContextVar("l10_audit_request", default=None)


class AuditContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        here = Actor(
            user=None, ip=client_ip(request), user_agent=request.headers.get("User-Agent", ""),
            request_id=request.headers.get("X-Request-ID", "")[:64] or secrets.token_hex(8),
        )  # fmt: skip
        token = _current.set(here)
        try:
            return self.get_response(request)
        finally:
            _current.reset(token)


def current_actor(user: User | None) -> Actor:
    """``user`` acting from the current request's address and client (the system's own
    place outside a request)."""
    here = _current.get()
    if here is None:
        return Actor(user=user) if user is not None else SYSTEM
    return Actor(user=user, ip=here.ip, user_agent=here.user_agent, request_id=here.request_id)
