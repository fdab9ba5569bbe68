"""Request and response shapes of the ingest API.

Numbers are strict (``"5"`` is not 5, ``true`` is not 1), unknown fields are refused, text
and free-form data follow the input rules of ``core.inputs`` (no control characters, no
non-finite numbers), timestamps carry a timezone and lie in a window (metric samples and
heartbeats: the minute rows' retention; events and usage: ``L10_INGEST_MAX_AGE_DAYS``; at
most ``FUTURE_SKEW`` ahead), and batches are bounded by ``L10_INGEST_MAX_BATCH``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from django.conf import settings
from ninja import Schema
from pydantic import AfterValidator, AwareDatetime, Field, Strict
from pydantic_core import PydanticCustomError

from core.schemas import LINE, PARAGRAPH, ExternalId, JsonObject, StrictSchema, recent
from fleet.models import DesiredState

MAX_COUNTER = 10**12


def _bounded_batch(value: list[Any]) -> list[Any]:
    limit = settings.L10.ingest_max_batch
    if len(value) > limit:
        raise PydanticCustomError(
            "batch_too_large",
            "The batch has {count} items; the limit is {limit}.",
            {"count": len(value), "limit": limit},
        )
    if not value:
        raise PydanticCustomError("batch_empty", "The batch is empty; send at least one item.")
    return value


def _minute_retention() -> timedelta:
    return timedelta(days=settings.L10.metrics_minute_retention_days)


def _record_retention() -> timedelta:
    return timedelta(days=settings.L10.ingest_max_age_days)


SampleTime = Annotated[AwareDatetime, recent(_minute_retention)]
RecordTime = Annotated[AwareDatetime, recent(_record_retention)]
Gauge = Annotated[float, Strict(), Field(ge=0, le=1e9, allow_inf_nan=False)]
Percent = Annotated[float, Strict(), Field(ge=0, le=100_000, allow_inf_nan=False)]
Counter = Annotated[int, Strict(), Field(ge=0, le=MAX_COUNTER)]
Name = Annotated[str, Strict(), Field(min_length=1, max_length=200), LINE]
LabelKey = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9._/-]+$")]
LabelValue = Annotated[str, Strict(), Field(max_length=200), LINE]
Labels = Annotated[dict[LabelKey, LabelValue], Field(max_length=50)]
ReportedState = Literal["starting", "running", "paused", "stopped", "error"]


class Metrics(StrictSchema):
    """A snapshot: gauges now, counters since the previous report."""

    cpu_percent: Percent | None = None
    memory_mb: Gauge | None = None
    tokens: Counter = 0
    requests: Counter = 0
    errors: Counter = 0
    latency_p95_ms: Gauge | None = None


class RegisterIn(StrictSchema):
    external_id: ExternalId
    name: Name | None = None
    labels: Labels | None = None


class AgentControlOut(Schema):
    """What an agent must obey, returned on register and on every heartbeat."""

    agent_id: str
    external_id: str
    desired_state: DesiredState
    version: int
    quotas: dict[str, dict[str, int]]
    usage: dict[str, dict[str, int]]
    heartbeat_interval: int
    pause_mode: Literal["now", "after_task"] | None = None
    pause_until: datetime | None = None
    decisions: list[DecisionOut] = Field(
        default_factory=list, description="Decisions of the approval requests the heartbeat named."
    )


class DecisionOut(Schema):
    """An approval request as its agent is told it: its decision once there is one."""

    approval_id: UUID
    key: str
    action: str
    state: Literal["pending", "approved", "rejected", "expired"]
    approved: bool | None = Field(description="None while pending; an expired request's is its on_timeout's.")
    decided_by: str | None = None
    comment: str = ""
    decided_at: datetime | None = None
    expires_at: datetime


class HeartbeatIn(StrictSchema):
    state: ReportedState
    metrics: Metrics | None = None
    at: SampleTime | None = None
    approvals: list[UUID] = Field(
        default_factory=list, max_length=100,
        description="The approval requests the agent is waiting on: their decisions come in the answer.",
    )  # fmt: skip


class ApprovalIn(StrictSchema):
    """An agent asks before a step a person must allow (docs/approvals.md). ``action``,
    ``timeout_s`` and ``on_timeout`` are checked by the service, with their own codes."""

    action: Annotated[str, Strict(), Field(min_length=1, max_length=100), LINE]
    summary: Annotated[str, Strict(), Field(min_length=1, max_length=500), LINE]
    details: Any = Field(default=None, description="JSON: text, an object, or {before, after} for a diff.")
    timeout_s: Annotated[float, Field(allow_inf_nan=False)] = 1800
    on_timeout: Annotated[str, Strict(), Field(max_length=20), LINE] = "reject"
    key: Annotated[str, Strict(), Field(max_length=200), LINE] | None = Field(
        default=None, description="The agent's name for the request: asking again with it returns the same request."
    )


class MetricSampleIn(Metrics):
    external_id: ExternalId
    id: UUID | None = Field(default=None, description="Set it so a retried batch is stored once.")
    at: SampleTime


class MetricBatchIn(StrictSchema):
    samples: Annotated[list[MetricSampleIn], AfterValidator(_bounded_batch)]


class EventIn(StrictSchema):
    external_id: ExternalId | None = None
    id: UUID | None = Field(default=None, description="Set it so a retried batch is stored once.")
    type: Annotated[str, Strict(), Field(min_length=1, max_length=100, pattern=r"^[a-z0-9_.-]+$")]
    severity: Literal["debug", "info", "warning", "error", "critical"] = "info"
    message: Annotated[str, Strict(), Field(max_length=1000), PARAGRAPH] = ""
    data: Annotated[JsonObject, Field(max_length=100)] = {}
    at: RecordTime


class EventBatchIn(StrictSchema):
    events: Annotated[list[EventIn], AfterValidator(_bounded_batch)]


class UsageIn(StrictSchema):
    external_id: ExternalId
    id: UUID | None = Field(default=None, description="Set it so a retried batch is stored once.")
    model: Annotated[str, Strict(), Field(min_length=1, max_length=100), LINE]
    input_tokens: Counter = 0
    output_tokens: Counter = 0
    api_calls: Counter = 0
    cached_input_tokens: Counter = Field(
        default=0, description="Of the input tokens, those read from the provider's prompt cache (priced lower)."
    )
    at: RecordTime


class UsageBatchIn(StrictSchema):
    records: Annotated[list[UsageIn], AfterValidator(_bounded_batch)]


class AcceptedOut(Schema):
    accepted: int
    duplicates: int = 0
