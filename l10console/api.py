"""The JSON API at /api/v1/: one NinjaAPI, errors always in the catalog's shape."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser

from l10console.errors import ErrorCode, InterfaceError

log = logging.getLogger(__name__)

# pydantic error types that have a code of their own; the rest are E10802.
ERROR_TYPE_CODES = {
    "time_in_future": ErrorCode.INGEST_TIME_IN_FUTURE,
    "batch_too_large": ErrorCode.INGEST_BATCH_TOO_LARGE,
}


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class StrictJSONParser(Parser):
    """Plain JSON only: no NaN/Infinity, an object at the top, a JSON content type."""

    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        content_type = request.content_type or ""
        if content_type != "application/json":
            raise InterfaceError(
                ErrorCode.INGEST_UNSUPPORTED_MEDIA, f"Content-Type must be application/json, got {content_type!r}."
            )
        try:
            data = json.loads(request.body, parse_constant=_refuse_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InterfaceError(ErrorCode.INGEST_MALFORMED_JSON, f"The body is not valid JSON: {exc}.") from exc
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
    code = ErrorCode.INGEST_INVALID
    for e in exc.errors:
        if e.get("type") in ERROR_TYPE_CODES:
            code = ERROR_TYPE_CODES[e["type"]]
            break
    summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems[:5])
    if len(problems) > 5:
        summary += f"; and {len(problems) - 5} more"
    return error_response(
        request, InterfaceError(code, summary + ". Nothing was stored.", details={"problems": problems[:50]})
    )


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


@api.exception_handler(Exception)
def on_unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    log.exception("unhandled API error on %s %s", request.method, request.path)
    return error_response(request, InterfaceError(ErrorCode.INTERNAL))


def _register_routers() -> None:
    from control.api import router as control_router
    from fleet.api import router as ingest_router

    api.add_router("/ingest", ingest_router)
    api.add_router("/agents", control_router)


_register_routers()
