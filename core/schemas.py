"""The base of every JSON input shape, and the field types of the input boundary.

``StrictSchema`` is a plain pydantic model that refuses unknown fields. Plain pydantic
rather than ninja's ``Schema``: ``Schema`` validates each nesting level again through its
Django getter, several times slower on a 1,000-item batch.

The field types apply ``core.inputs``'s rules, so a body and a Python API call are held to
the same ones: ``LINE`` and ``PARAGRAPH`` for text, ``JsonObject`` for free-form data,
``recent(max_age)`` for timestamps, ``ExternalId`` for the ids agents choose.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict
from pydantic_core import PydanticCustomError

from core import inputs


class StrictSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _text_validator(multiline: bool) -> Callable[[str], str]:
    def check(value: str) -> str:
        problem = inputs.text_problem(value, multiline=multiline)
        if problem:
            raise PydanticCustomError("bad_text", "Text {problem}", {"problem": problem})
        return value

    return check


# Annotate a ``str`` field with one of these: ``Annotated[str, Strict(), Field(...), LINE]``.
LINE = AfterValidator(_text_validator(multiline=False))  # one line: no control character at all
PARAGRAPH = AfterValidator(_text_validator(multiline=True))  # tabs and line breaks allowed


def _json_object(value: dict[str, Any]) -> dict[str, Any]:
    problem = inputs.json_problem(value)
    if problem:
        raise PydanticCustomError("bad_json", "{problem}", {"problem": problem})
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_json_object)]

ExternalId = Annotated[
    str,
    Strict(),
    Field(
        min_length=1,
        max_length=inputs.EXTERNAL_ID_MAX,
        pattern=inputs.EXTERNAL_ID_PATTERN,
        description="Letters, digits and . _ : @ - (1 to 200).",
    ),
]


def recent(max_age: Callable[[], timedelta]) -> AfterValidator:
    """For an ``AwareDatetime``: no older than ``max_age()`` and at most
    ``inputs.FUTURE_SKEW`` ahead of the server's clock (error types ``time_too_old`` and
    ``time_in_future``). The window's ends are worked out at most once a second: a batch
    of a thousand timestamps compares each against them and does nothing else."""
    window: list[Any] = [0.0, None, None, None]  # (computed at, max age, oldest, newest)

    def check(value: datetime) -> datetime:
        tick = time.monotonic()
        age = max_age()
        if tick - window[0] > 1.0 or age != window[1]:
            now = datetime.now(UTC)
            window[:] = [tick, age, now - age, now + inputs.FUTURE_SKEW]
        if window[2] <= value <= window[3]:  # aware datetimes compare without overflow
            return value
        found = inputs.time_problem(value, max_age=age)
        if found:
            kind, reason = found
            raise PydanticCustomError(kind, "Timestamp {value} {reason}", {"value": str(value), "reason": reason})
        return value

    return AfterValidator(check)


class ErrorBody(BaseModel):
    code: str = Field(pattern=r"^E10\d{3}$", description="The E10xxx code (docs/api.md, error codes).")
    message: str
    recoverable: bool
    suggestion: str
    details: dict[str, Any] | None = None


class ErrorOut(BaseModel):
    """Every error of the JSON API: ``{"error": {"code", "message", "recoverable", "suggestion"}}``."""

    error: ErrorBody


# The statuses an API route may answer with an error body, for its OpenAPI entry.
API_ERRORS = frozenset({400, 401, 403, 404, 409, 413, 415, 422, 429, 503})
