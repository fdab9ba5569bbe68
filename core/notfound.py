"""The console's own "not found" page in debug mode too.

With ``DEBUG`` on, Django answers a 404 with its technical page, which lists every URL
pattern of the console; the page a newcomer meets with ``make run`` must be the one
production shows (``templates/404.html``). Off debug, Django's own handler renders that
page and this middleware does nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import Resolver404, resolve
from django.views import defaults


class DebugNotFoundMiddleware:
    """After ``CommonMiddleware`` (whose slash redirect comes first)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if settings.DEBUG:
            try:
                resolve(request.path_info)
            except Resolver404 as exc:
                return defaults.page_not_found(request, exc)
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if settings.DEBUG and isinstance(exception, Http404):
            return defaults.page_not_found(request, exception)
        return None
