"""Health and metrics routes: ``/healthz`` (alive), ``/readyz`` (ready), ``/metrics``."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from core import observability


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """Alive: the process answers. Readiness (database, cache, hub) is /readyz."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready: the database, the cache and the hub answer (each check bounded in time); 503 if not."""
    ready, body = observability.readiness()
    return JsonResponse(body, status=200 if ready else 503)


@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """The console's own Prometheus metrics, for the addresses in L10_METRICS_ALLOWED only."""
    # An address not allowed learns nothing, not even that the route exists.
    if not observability.scrape_allowed(request.META.get("REMOTE_ADDR"), settings.L10.metrics_allowed):
        raise Http404
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    body, content_type = observability.exposition(request.headers.get("Accept", ""))
    return HttpResponse(body, content_type=content_type)
