"""The ingest API that agents (and the SDK) speak, authenticated by a tenant API token."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from django.http import HttpRequest
from ninja import Router, Status

from approvals import services as approvals
from approvals.models import ApprovalRequest
from approvals.selectors import said
from approvals.services import MAX_TIMEOUT, NewRequest
from core.errors import ErrorCode, InterfaceError
from core.inputs import EXTERNAL_ID, EXTERNAL_ID_CHARS, EXTERNAL_ID_MAX
from core.observability import INGEST_RECORDS
from core.schemas import API_ERRORS, ErrorOut
from fleet import samples
from fleet import services as fleet_services
from fleet.models import Agent
from ingest import services
from ingest.control import AgentControl
from ingest.schemas import (
    AcceptedOut,
    AgentControlOut,
    ApprovalIn,
    DecisionOut,
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


@router.post("/register", response={200: AgentControlOut, 201: AgentControlOut, API_ERRORS: ErrorOut})
def register(request: HttpRequest, payload: RegisterIn) -> Status:
    """Create the agent (201) or update its name and labels (200); returns what it must obey."""
    agent, created = fleet_services.agent_register(
        tenant=_token(request).tenant, external_id=payload.external_id, name=payload.name, labels=payload.labels
    )
    return Status(201 if created else 200, AgentControl.of(agent))


@router.post("/agents/{external_id}/heartbeat", response={200: AgentControlOut, API_ERRORS: ErrorOut})
def heartbeat(request: HttpRequest, external_id: str, payload: HeartbeatIn) -> AgentControl:
    """Report observed state and metrics; the answer carries desired state, quotas and interval."""
    if not EXTERNAL_ID.fullmatch(external_id):
        raise InterfaceError(
            ErrorCode.INGEST_INVALID,
            f"external_id must be 1 to {EXTERNAL_ID_MAX} of {EXTERNAL_ID_CHARS}. Nothing was stored.",
            details={"problems": [{"field": "external_id", "problem": "not a valid external id"}]},
        )
    agent = fleet_services.agent_heartbeat(
        tenant=_token(request).tenant,
        external_id=external_id,
        state=payload.state,
        reading=payload.metrics,
        at=payload.at,
    )
    INGEST_RECORDS.labels(kind="heartbeat").inc()
    return AgentControl.of(agent, waiting=payload.approvals)


def _agent(request: HttpRequest, external_id: str) -> Agent:
    if not EXTERNAL_ID.fullmatch(external_id):
        raise InterfaceError(ErrorCode.INGEST_UNKNOWN_AGENT, "No such agent in this tenant; register first.")
    agent = Agent.objects.filter(tenant=_token(request).tenant, external_id=external_id).first()
    if agent is None:
        raise InterfaceError(
            ErrorCode.INGEST_UNKNOWN_AGENT, f"No agent {external_id!r} in this tenant; register first."
        )
    return agent


@router.post("/agents/{external_id}/approvals", response={200: DecisionOut, 201: DecisionOut, API_ERRORS: ErrorOut})
def approval_request(request: HttpRequest, external_id: str, payload: ApprovalIn) -> Status:
    """Ask for a person's approval (201), or get the request asked before with the same
    ``key`` (200), with its decision if there is one (docs/approvals.md)."""
    agent = _agent(request, external_id)
    try:
        timeout = timedelta(seconds=payload.timeout_s)
    except OverflowError:
        timeout = MAX_TIMEOUT * 2  # refused below, with its own code
    asked, created = approvals.request_create(
        agent=agent,
        new=NewRequest(payload.action, payload.summary, payload.details, timeout, payload.on_timeout, payload.key),
    )
    return Status(201 if created else 200, said(asked, agent))


@router.get("/agents/{external_id}/approvals/{approval_id}", response={200: DecisionOut, API_ERRORS: ErrorOut})
def approval_read(request: HttpRequest, external_id: str, approval_id: UUID) -> dict[str, Any]:
    """One of the agent's approval requests, with its decision if there is one."""
    agent = _agent(request, external_id)
    found = ApprovalRequest.objects.filter(agent=agent, pk=approval_id).first()
    if found is None:
        raise InterfaceError(ErrorCode.APPROVAL_NOT_FOUND)
    return said(found, agent)


@router.post("/metrics", response={200: AcceptedOut, API_ERRORS: ErrorOut})
def metrics(request: HttpRequest, payload: MetricBatchIn) -> dict[str, int]:
    """A batch of metric samples; samples within one minute are merged into its row, and a
    sample with an ``id`` seen before is skipped (counted in ``duplicates``)."""
    recorded = samples.metrics_record(tenant=_token(request).tenant, samples=payload.samples)
    INGEST_RECORDS.labels(kind="metrics").inc(recorded.accepted)
    return {"accepted": recorded.accepted, "duplicates": recorded.duplicates}


@router.post("/events", response={200: AcceptedOut, API_ERRORS: ErrorOut})
def events(request: HttpRequest, payload: EventBatchIn) -> dict[str, int]:
    """A batch of events (task.completed, errors, …); an event with a known ``id`` is skipped."""
    stored, duplicates = services.events_ingest(tenant=_token(request).tenant, events=payload.events)
    INGEST_RECORDS.labels(kind="events").inc(stored)
    return {"accepted": stored, "duplicates": duplicates}


@router.post("/usage", response={200: AcceptedOut, API_ERRORS: ErrorOut})
def usage(request: HttpRequest, payload: UsageBatchIn) -> dict[str, int]:
    """A batch of model usage records; always stored (it is money already spent)."""
    stored, duplicates = services.usage_ingest(tenant=_token(request).tenant, records=payload.records)
    INGEST_RECORDS.labels(kind="usage").inc(stored)
    return {"accepted": stored, "duplicates": duplicates}
