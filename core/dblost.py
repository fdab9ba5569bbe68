"""A page whose database connection failed under it (a restart, a failover, a terminated
connection) answers 503 with E10902, not a 500: its transaction rolled back, so nothing of
it was stored, and the next request opens a new connection (docs/operations.md,
"Faults"). The page is rendered without the request's context (no query on the broken
connection). The JSON API answers the same in its own shape (l10console/api.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django import db
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

from core.errors import ErrorCode, InterfaceError

log = logging.getLogger(__name__)


class DatabaseLostMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, db.OperationalError):
            return None
        log.warning("the database connection failed under %s %s: %s", request.method, request.path, exception)
        error = InterfaceError(
            ErrorCode.SERVICE_UNAVAILABLE, "The database connection was lost; nothing was changed. Try again."
        )
        response = HttpResponse(render_to_string("503.html", {"error": error}), status=503)
        response["Retry-After"] = "1"
        return response
