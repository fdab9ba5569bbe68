"""The ingest API that agents (and the SDK) speak, authenticated by a tenant API token."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Status

from core.errors import ErrorCode, InterfaceError
from core.observability import INGEST_RECORDS
from fleet import samples
from fleet import services as fleet_services
from ingest import services
from ingest.control import AgentControl
from ingest.schemas import (
    AcceptedOut,
    AgentControlOut,
    EventBatchIn,
    HeartbeatIn,
    MetricBatchIn,
    RegisterIn,
    UsageBatchIn,
)
from tenancy.api_auth import TenantToken
from tenancy.models import ApiToken

router = Router(auth=TenantToken(), tags=["ingest"])


def _token(request: HttpRequest) -> ApiToken:
    token = request.auth  # type: ignore[attr-defined]
    if not isinstance(token, ApiToken):  # the router's auth guarantees it
        raise InterfaceError(ErrorCode.AUTH_REQUIRED)
    return token


@router.post("/register", response={200: AgentControlOut, 201: AgentControlOut})
def register(request: HttpRequest, payload: RegisterIn) -> Status:
    """Create the agent (201) or update its name and labels (200); returns what it must obey."""
    agent, created = fleet_services.agent_register(
        tenant=_token(request).tenant, external_id=payload.external_id, name=payload.name, labels=payload.labels
    )
    return Status(201 if created else 200, AgentControl.of(agent))


@router.post("/agents/{external_id}/heartbeat", response=AgentControlOut)
def heartbeat(request: HttpRequest, external_id: str, payload: HeartbeatIn) -> AgentControl:
    """Report observed state and metrics; the answer carries desired state, quotas and interval."""
    agent = fleet_services.agent_heartbeat(
        tenant=_token(request).tenant,
        external_id=external_id,
        state=payload.state,
        reading=payload.metrics,
        at=payload.at,
    )
    INGEST_RECORDS.labels(kind="heartbeat").inc()
    return AgentControl.of(agent)


@router.post("/metrics", response=AcceptedOut)
def metrics(request: HttpRequest, payload: MetricBatchIn) -> dict[str, int]:
    """A batch of metric samples; samples within one minute are merged into its row."""
    samples.metrics_record(tenant=_token(request).tenant, samples=payload.samples)
    INGEST_RECORDS.labels(kind="metrics").inc(len(payload.samples))
    return {"accepted": len(payload.samples), "duplicates": 0}


@router.post("/events", response=AcceptedOut)
def events(request: HttpRequest, payload: EventBatchIn) -> dict[str, int]:
    """A batch of events (task.completed, errors, …); an event with a known ``id`` is skipped."""
    stored, duplicates = services.events_ingest(tenant=_token(request).tenant, events=payload.events)
    INGEST_RECORDS.labels(kind="events").inc(stored)
    return {"accepted": stored, "duplicates": duplicates}


@router.post("/usage", response=AcceptedOut)
def usage(request: HttpRequest, payload: UsageBatchIn) -> dict[str, int]:
    """A batch of model usage records; always stored (it is money already spent)."""
    stored, duplicates = services.usage_ingest(tenant=_token(request).tenant, records=payload.records)
    INGEST_RECORDS.labels(kind="usage").inc(stored)
    return {"accepted": stored, "duplicates": duplicates}
