"""The JSON API at /api/v1/: one NinjaAPI with each app's router, errors always in the
catalog's shape (``{"error": {"code", "message", "recoverable", "suggestion"}}``)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django import db
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.urls import URLPattern, URLResolver, reverse
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser

from approvals import api as approvals_api
from control import api as control_api
from core import inputs
from core.errors import ErrorCode, InterfaceError
from events import api as events_api
from ingest import api as ingest_api

log = logging.getLogger(__name__)

# The routers, by their prefix under /api/v1/; and how each names a body that does not
# fit its shape: the code of the first field at fault (control), the router's own code
# (approvals), else by the kind of fault.
ROUTERS = {
    "/ingest": ingest_api.router,
    "/agents": control_api.router,
    "/events": events_api.router,
    "/approvals": approvals_api.router,
}
# pydantic error types that have a code of their own (ingest); the rest are E10802.
ERROR_TYPE_CODES = {
    "time_in_future": ErrorCode.INGEST_TIME_IN_FUTURE,
    "time_too_old": ErrorCode.INGEST_TIME_TOO_OLD,
    "batch_too_large": ErrorCode.INGEST_BATCH_TOO_LARGE,
}


class StrictJSONParser(Parser):
    """JSON as ``core.inputs.loads`` takes it (no NaN, Infinity or overflow, bounded depth;
    the text is left to each field's type), an object at the top, a JSON content type."""

    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        content_type = request.content_type or ""
        if content_type != "application/json":
            raise InterfaceError(
                ErrorCode.INGEST_UNSUPPORTED_MEDIA, f"Content-Type must be application/json, got {content_type!r}."
            )
        try:
            data = inputs.loads(request.body, text=False)
        except inputs.InputProblem as exc:
            raise InterfaceError(ErrorCode.INGEST_MALFORMED_JSON, f"The body is refused: {exc}.") from exc
        if not isinstance(data, dict):
            raise InterfaceError(ErrorCode.INGEST_MALFORMED_JSON, "The body must be a JSON object.")
        return data


api = NinjaAPI(
    title="L10 Operator Console API",
    version="1",
    urls_namespace="api",
    parser=StrictJSONParser(),
    docs_url="/docs",
    openapi_url="/openapi.json",
)


def error_response(request: HttpRequest, error: InterfaceError) -> HttpResponse:
    response = api.create_response(request, error.as_dict(), status=error.http_status)
    if error.retry_after is not None:
        response["Retry-After"] = str(error.retry_after)
    return response


@api.exception_handler(InterfaceError)
def on_interface_error(request: HttpRequest, exc: InterfaceError) -> HttpResponse:
    return error_response(request, exc)


def _where(loc: tuple[Any, ...] | list[Any]) -> str:
    # ninja prefixes body fields with ("body", "<param name>"): drop them.
    parts = list(loc)
    if parts[:1] == ["body"]:
        parts = parts[2:]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


@api.exception_handler(ValidationError)
def on_validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    problems = [{"field": _where(e.get("loc", ())), "problem": e.get("msg", "invalid")} for e in exc.errors]
    code = _validation_code(request, exc.errors)
    summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:5])
    if len(problems) > 5:
        summary += f"; and {len(problems) - 5} more"
    return error_response(
        request, InterfaceError(code, summary + ". Nothing was stored.", details={"problems": problems[:50]})
    )


def _router_prefix(request: HttpRequest) -> str:
    """The prefix of the router that served the request (``/agents``), from its route."""
    route = str(getattr(request.resolver_match, "route", "") or "")
    root = reverse("api:openapi-json").lstrip("/").removesuffix("openapi.json")
    return "/" + route.removeprefix(root).split("/", 1)[0]


def _validation_code(request: HttpRequest, errors: list[dict[str, Any]]) -> ErrorCode:
    prefix = _router_prefix(request)
    if prefix == "/agents":
        return control_api.error_code([_where(e.get("loc", ())).split(".")[0].split("[")[0] for e in errors])
    if prefix == "/approvals":
        return ErrorCode.APPROVAL_INVALID
    for e in errors:
        if e.get("type") in ERROR_TYPE_CODES:
            return ERROR_TYPE_CODES[e["type"]]
    return ErrorCode.INGEST_INVALID


@api.exception_handler(AuthenticationError)
def on_authentication_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return error_response(request, InterfaceError(ErrorCode.AUTH_REQUIRED))


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    # ninja wraps parser failures in HttpError(400); the cause carries our code.
    if isinstance(exc.__cause__, InterfaceError):
        return error_response(request, exc.__cause__)
    code = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}.get(exc.status_code, ErrorCode.INGEST_INVALID)
    return error_response(request, InterfaceError(code, str(exc)))


@api.exception_handler(Http404)
def on_not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error_response(request, InterfaceError(ErrorCode.NOT_FOUND, str(exc) or None))


@api.exception_handler(db.OperationalError)
def on_database_lost(request: HttpRequest, exc: db.OperationalError) -> HttpResponse:
    """The database went away under the request (a restart, a failover, a terminated
    connection): its transaction rolled back, so nothing of it was stored; the next
    request opens a new connection (docs/operations.md, "Faults")."""
    log.warning("the database connection failed under %s %s: %s", request.method, request.path, exc)
    return error_response(
        request,
        InterfaceError(
            ErrorCode.SERVICE_UNAVAILABLE, "The database connection was lost; nothing was changed. Try again."
        ),
    )


@api.exception_handler(Exception)
def on_unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    log.exception("unhandled API error on %s %s", request.method, request.path)
    return error_response(request, InterfaceError(ErrorCode.INTERNAL))


for prefix, router in ROUTERS.items():
    api.add_router(prefix, router)


def _json_not_allowed(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """ninja answers a method a route does not take with plain text: answer in the API's
    error shape instead, keeping the ``Allow`` header."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        if isinstance(response, HttpResponseNotAllowed):
            allowed = response["Allow"]
            error = InterfaceError(
                ErrorCode.METHOD_NOT_ALLOWED, f"{request.method} is not allowed on {request.path}; use {allowed}."
            )
            response = JsonResponse(error.as_dict(), status=error.http_status)
            response["Allow"] = allowed
        return response

    return wrapped


def api_urls() -> tuple[list[URLPattern | URLResolver], str, str]:
    """``api.urls``, each route answering a wrong method with an error body (E10904)."""
    patterns, app_name, namespace = api.urls
    wrapped: list[URLPattern | URLResolver] = [
        URLPattern(p.pattern, _json_not_allowed(p.callback), p.default_args, p.name) if isinstance(p, URLPattern) else p
        for p in patterns
    ]
    return wrapped, app_name, namespace


@csrf_exempt  # it changes nothing; a POST must get the JSON 404, not the CSRF page
def api_not_found(request: HttpRequest) -> JsonResponse:
    """Unknown API paths answer in the API's error shape, not with an HTML page."""
    error = InterfaceError(ErrorCode.NOT_FOUND, f"No API route {request.method} {request.path}.")
    return JsonResponse(error.as_dict(), status=error.http_status)
