"""Request and response shapes of the ingest API.

Numbers are strict (``"5"`` is not 5, ``true`` is not 1), unknown fields are refused,
timestamps must carry a timezone and may not lie more than ``FUTURE_TOLERANCE`` ahead of
the server's clock, and batches are bounded by ``L10_INGEST_MAX_BATCH``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from django.conf import settings
from django.utils import timezone
from ninja import Schema
from pydantic import AfterValidator, AwareDatetime, Field, Strict
from pydantic_core import PydanticCustomError

from core.schemas import StrictSchema
from fleet.models import DesiredState

FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_COUNTER = 10**12


def _not_in_future(value: AwareDatetime) -> AwareDatetime:
    if value > timezone.now() + FUTURE_TOLERANCE:
        raise PydanticCustomError(
            "time_in_future",
            "Timestamp {value} is more than {minutes} minutes ahead of the server's clock.",
            {"value": value.isoformat(), "minutes": int(FUTURE_TOLERANCE.total_seconds() // 60)},
        )
    return value


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


Timestamp = Annotated[AwareDatetime, AfterValidator(_not_in_future)]
Gauge = Annotated[float, Strict(), Field(ge=0, le=1e9, allow_inf_nan=False)]
Percent = Annotated[float, Strict(), Field(ge=0, le=100_000, allow_inf_nan=False)]
Counter = Annotated[int, Strict(), Field(ge=0, le=MAX_COUNTER)]
ExternalId = Annotated[str, Strict(), Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:@/-]+$")]
Name = Annotated[str, Strict(), Field(min_length=1, max_length=200)]
LabelKey = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9._/-]+$")]
LabelValue = Annotated[str, Strict(), Field(max_length=200)]
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


class HeartbeatIn(StrictSchema):
    state: ReportedState
    metrics: Metrics | None = None
    at: Timestamp | None = None


class MetricSampleIn(Metrics):
    external_id: ExternalId
    at: Timestamp


class MetricBatchIn(StrictSchema):
    samples: Annotated[list[MetricSampleIn], AfterValidator(_bounded_batch)]


class EventIn(StrictSchema):
    external_id: ExternalId | None = None
    id: UUID | None = Field(default=None, description="Set it so a retried batch is stored once.")
    type: Annotated[str, Strict(), Field(min_length=1, max_length=100, pattern=r"^[a-z0-9_.-]+$")]
    severity: Literal["debug", "info", "warning", "error", "critical"] = "info"
    message: Annotated[str, Strict(), Field(max_length=1000)] = ""
    data: Annotated[dict[str, Any], Field(max_length=100)] = {}
    at: Timestamp


class EventBatchIn(StrictSchema):
    events: Annotated[list[EventIn], AfterValidator(_bounded_batch)]


class UsageIn(StrictSchema):
    external_id: ExternalId
    id: UUID | None = Field(default=None, description="Set it so a retried batch is stored once.")
    model: Annotated[str, Strict(), Field(min_length=1, max_length=100)]
    input_tokens: Counter = 0
    output_tokens: Counter = 0
    api_calls: Counter = 0
    at: Timestamp


class UsageBatchIn(StrictSchema):
    records: Annotated[list[UsageIn], AfterValidator(_bounded_batch)]


class AcceptedOut(Schema):
    accepted: int
    duplicates: int = 0
