from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Alive: the process answers. Readiness (database, cache, hub) is /readyz."""
    return JsonResponse({"status": "ok"})
