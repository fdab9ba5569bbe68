"""The ingest API that agents (and the SDK) speak, authenticated by a tenant API token."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Status
from ninja.security import HttpBearer

from fleet import services
from fleet.models import ApiToken
from fleet.schemas import (
    AcceptedOut,
    AgentControlOut,
    EventBatchIn,
    HeartbeatIn,
    MetricBatchIn,
    RegisterIn,
    UsageBatchIn,
)
from l10console import ratelimit
from l10console.errors import ErrorCode, InterfaceError
from l10console.observability import INGEST_RECORDS


class TenantToken(HttpBearer):
    """``Authorization: Bearer l10_…``: the tenant's token, rate-limited per token."""

    openapi_description = "A tenant API token, created by a tenant admin under Settings → API tokens."

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken:
        if not token.strip():
            raise InterfaceError(ErrorCode.AUTH_REQUIRED)
        api_token = services.token_authenticate(token)
        ratelimit.enforce_per_token("ingest", api_token.pk)
        return api_token


router = Router(auth=TenantToken(), tags=["ingest"])


def _token(request: HttpRequest) -> ApiToken:
    token = request.auth  # type: ignore[attr-defined]
    if not isinstance(token, ApiToken):  # the router's auth guarantees it
        raise InterfaceError(ErrorCode.AUTH_REQUIRED)
    return token


@router.post("/register", response={200: AgentControlOut, 201: AgentControlOut})
def register(request: HttpRequest, payload: RegisterIn) -> Status:
    """Create the agent (201) or update its name and labels (200); returns what it must obey."""
    agent, created = services.agent_register(tenant=_token(request).tenant, data=payload)
    return Status(201 if created else 200, services.AgentControl.of(agent))


@router.post("/agents/{external_id}/heartbeat", response=AgentControlOut)
def heartbeat(request: HttpRequest, external_id: str, payload: HeartbeatIn) -> services.AgentControl:
    """Report observed state and metrics; the answer carries desired state, quotas and interval."""
    agent = services.agent_heartbeat(tenant=_token(request).tenant, external_id=external_id, data=payload)
    INGEST_RECORDS.labels(kind="heartbeat").inc()
    return services.AgentControl.of(agent)


@router.post("/metrics", response=AcceptedOut)
def metrics(request: HttpRequest, payload: MetricBatchIn) -> dict[str, int]:
    """A batch of metric samples; samples within one minute are merged into its row."""
    services.metrics_record(tenant=_token(request).tenant, samples=payload.samples)
    INGEST_RECORDS.labels(kind="metrics").inc(len(payload.samples))
    return {"accepted": len(payload.samples), "duplicates": 0}


@router.post("/events", response=AcceptedOut)
def events(request: HttpRequest, payload: EventBatchIn) -> dict[str, int]:
    """A batch of events (task.completed, errors, …); an event with a known ``id`` is skipped."""
    stored, duplicates = services.events_record(tenant=_token(request).tenant, events=payload.events)
    INGEST_RECORDS.labels(kind="events").inc(stored)
    return {"accepted": stored, "duplicates": duplicates}


@router.post("/usage", response=AcceptedOut)
def usage(request: HttpRequest, payload: UsageBatchIn) -> dict[str, int]:
    """A batch of model usage records; always stored (it is money already spent)."""
    stored, duplicates = services.usage_record(tenant=_token(request).tenant, records=payload.records)
    INGEST_RECORDS.labels(kind="usage").inc(stored)
    return {"accepted": stored, "duplicates": duplicates}
