from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from l10console.errors import ErrorCode, InterfaceError


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Alive: the process answers. Readiness (database, cache, hub) is /readyz."""
    return JsonResponse({"status": "ok"})


def api_not_found(request: HttpRequest) -> JsonResponse:
    """Unknown API paths answer in the API's error shape, not with an HTML page."""
    error = InterfaceError(ErrorCode.NOT_FOUND, f"No API route {request.method} {request.path}.")
    return JsonResponse(error.as_dict(), status=error.http_status)
