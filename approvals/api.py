"""The approvals inbox as JSON, for people's scripts and bots (docs/api.md, "The
approvals API"): ``GET /api/v1/approvals`` lists a tenant's requests, ``POST
/api/v1/approvals/{id}/approve`` and ``/reject`` decide one.

Authenticated by a personal API token, as the control API is: listing needs the ``read``
scope and names the tenant as the events API does (``tenant_id``); deciding needs the
``control`` scope and acts with the person's role in the request's own tenant. A request
of a tenant the person does not belong to is as absent as one that does not exist
(E10354). ``Idempotency-Key`` makes a decision safe to retry, as in the control API: the
key and its answer are stored in the transaction of the decision (control's idempotency
records, kept ``L10_CONTROL_IDEMPOTENCY_TTL``), a retry gets that first answer with
``Idempotent-Replayed: true``, and the same key with another decision is E10304.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.db.models import Prefetch, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from ninja import Path, Query, Router, Schema
from pydantic import BaseModel, Field, Strict

from approvals import services
from approvals.models import ApprovalRequest, ApprovalVote, State
from audit.services import request_actor
from control import sql as idempotency
from control.rules import KEY_PATTERN
from control.services import member_role
from core.errors import ErrorCode, InterfaceError
from core.inputs import text_problem
from core.listing import refuse
from core.schemas import API_ERRORS, PARAGRAPH, ErrorOut, StrictSchema
from tenancy.api_auth import PersonalBearer, read_tenant
from tenancy.models import PersonalToken, Scope


class PersonalReader(PersonalBearer):
    """``Authorization: Bearer l10p_…`` with the ``read`` scope, counted with the other
    reads of personal tokens."""

    openapi_description = "A personal API token with the read scope; it reads the tenants its person belongs to."
    kind = "read-personal"
    scope = Scope.READ


router = Router(tags=["approvals"])

# The states a list may ask for; "all" is every state, newest first.
STATES = ("pending", "approved", "rejected", "expired", "all")
KEYS = frozenset({"tenant_id", "state", "agent", "action", "limit", "cursor"})
MAX_LIMIT = 200
DEFAULT_LIMIT = 50
CURSOR_SALT = "approvals.api.list"
ApprovalId = Path(..., description="The request's id (a UUID), as the list and the notifications give it.")


def _text(description: str, **schema: Any) -> Any:
    # Every parameter is taken as text and read by ``_filters``, which refuses with
    # E10350 naming the field; the schema below only describes them.
    return Field("", description=description, json_schema_extra=schema or None)


class ApprovalsQuery(Schema):
    tenant_id: str = _text(
        "The tenant's slug or id; may be left out when the token's person belongs to exactly one tenant."
    )
    state: str = _text(
        "pending (the default; oldest first), approved, rejected, expired, or all (newest first).",
        enum=list(STATES),
        default="pending",
    )
    agent: str = _text("Only this agent's requests: its external id.")
    action: str = _text("Only requests of this action (email.send).")
    limit: str = _text(
        f"Requests per page, 1 to {MAX_LIMIT}.", type="integer", minimum=1, maximum=MAX_LIMIT, default=DEFAULT_LIMIT
    )
    cursor: str = _text("The next_cursor of the previous page of the same state.")


class VoteOut(BaseModel):
    by: str = Field(description="The username of the person who approved.")
    at: datetime
    comment: str


class ApprovalOut(BaseModel):
    """A request as a person sees it: what the agent asks, who may decide, and the answer."""

    id: UUID
    agent_id: UUID
    external_id: str = Field(description="The asking agent's external id.")
    action: str
    summary: str
    details: Any = Field(description="The JSON the agent sent with it (null: none).")
    state: Literal["pending", "approved", "rejected", "expired"]
    approved: bool | None = Field(description="Null while pending; an expired request's is its on_timeout's.")
    on_timeout: Literal["reject", "approve"]
    needs_role: Literal["viewer", "operator", "admin"] = Field(description="The least role that may decide it.")
    needs_approvers: int = Field(description="1, or 2: two different people must approve.")
    approvals: list[VoteOut] = Field(description="The approvals given so far, first first.")
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decided_by: str | None = Field(description='Who decided: a username, or "timeout"; null while pending.')
    comment: str


class ApprovalsOut(BaseModel):
    next_cursor: str | None = Field(description="Pass as cursor= for the next page; null on the last page.")
    approvals: list[ApprovalOut]


class DecisionIn(StrictSchema):
    comment: Annotated[str, Strict(), Field(max_length=services.MAX_COMMENT), PARAGRAPH] = Field(
        default="", description="Why; required to reject. It is audited and the agent is told it."
    )


def approval_out(request: ApprovalRequest) -> dict[str, Any]:
    """``request`` as the API answers it (JSON types, as an idempotent replay stores it)."""
    votes = sorted(request.votes.all(), key=lambda v: (v.at, v.pk))
    given = [{"by": v.user_label, "at": v.at, "comment": v.comment} for v in votes]
    if request.state == State.APPROVED:
        given.append({"by": request.decided_by_label, "at": request.decided_at, "comment": request.comment})
    agent = request.agent
    fields = {
        "id": request.pk, "agent_id": agent.pk, "external_id": agent.external_id, "action": request.action,
        "summary": request.summary, "details": request.details, "state": request.state, "approved": request.approved,
        "on_timeout": request.on_timeout, "needs_role": request.needs_role, "needs_approvers": request.needs_approvers,
        "approvals": given, "created_at": request.created_at, "expires_at": request.expires_at,
        "decided_at": request.decided_at, "decided_by": request.decided_by_label or None, "comment": request.comment,
    }  # fmt: skip
    return ApprovalOut.model_validate(fields).model_dump(mode="json")


# --- the list ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    state: str
    agent: str
    action: str
    limit: int
    after: tuple[datetime, UUID] | None


def _invalid(field: str, problem: str) -> InterfaceError:
    return refuse(ErrorCode.APPROVAL_INVALID, field, f"“{field}” {problem}.")


def _params(request: HttpRequest) -> dict[str, str]:
    """The query string, each key once; an unknown key is refused by its name."""
    params: dict[str, str] = {}
    for key, values in request.GET.lists():
        if key not in KEYS:
            raise _invalid(key[:40], "is not a filter of the approvals list")
        if len(values) > 1:
            raise _invalid(key, "may be given once")
        params[key] = values[0]
    return params


def _filters(params: dict[str, str], tenant_id: int) -> Filters:
    state = params.get("state", "").strip() or "pending"
    if state not in STATES:
        raise _invalid("state", f"is one of {', '.join(STATES)}")
    for name, longest in (("agent", 200), ("action", 100)):
        value = params.get(name, "")
        if problem := text_problem(value) or (f"is longer than {longest} characters" if len(value) > longest else ""):
            raise _invalid(name, problem)
    raw = params.get("limit", "").strip()
    if raw and (not raw.isdigit() or len(raw) > 4 or not 1 <= int(raw) <= MAX_LIMIT):
        raise _invalid("limit", f"is a whole number from 1 to {MAX_LIMIT}")
    cursor = params.get("cursor", "").strip()
    after = _read_cursor(cursor, tenant_id, state) if cursor else None
    return Filters(state, params.get("agent", ""), params.get("action", ""), int(raw or DEFAULT_LIMIT), after)


def _make_cursor(tenant_id: int, state: str, last: ApprovalRequest) -> str:
    return signing.dumps(
        {"t": tenant_id, "s": state, "at": last.created_at.isoformat(), "id": str(last.pk)}, salt=CURSOR_SALT
    )


def _read_cursor(text: str, tenant_id: int, state: str) -> tuple[datetime, UUID]:
    """The (created_at, id) a cursor of this tenant's ``state`` list starts after."""
    try:
        if len(text) > 500 or text_problem(text):
            raise signing.BadSignature
        data = signing.loads(text, salt=CURSOR_SALT)
        if not isinstance(data, dict) or data.get("t") != tenant_id or data.get("s") != state:
            raise signing.BadSignature
        at, pk = datetime.fromisoformat(data["at"]), UUID(data["id"])
        if at.tzinfo is None:
            raise signing.BadSignature
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        raise _invalid("cursor", "is not one this list gave (altered, or of another tenant or state)") from None
    return at, pk


def listed(tenant_id: int, filters: Filters) -> tuple[list[ApprovalRequest], str | None]:
    """One page of the tenant's requests: pending ones oldest first (the inbox's order:
    the one that runs out first on top), the others newest first; and the next cursor."""
    found: QuerySet[ApprovalRequest] = ApprovalRequest.objects.filter(tenant_id=tenant_id)
    if filters.state != "all":
        found = found.filter(state=filters.state)
    if filters.agent:
        found = found.filter(agent__external_id=filters.agent)
    if filters.action:
        found = found.filter(action=filters.action)
    oldest_first = filters.state == State.PENDING
    if filters.after is not None:
        at, pk = filters.after
        if oldest_first:
            found = found.filter(Q(created_at__gt=at) | Q(created_at=at, pk__gt=pk))
        else:
            found = found.filter(Q(created_at__lt=at) | Q(created_at=at, pk__lt=pk))
    order = ("created_at", "pk") if oldest_first else ("-created_at", "-pk")
    votes = Prefetch("votes", queryset=ApprovalVote.objects.order_by("at", "pk"))
    rows = list(found.select_related("agent").prefetch_related(votes).order_by(*order)[: filters.limit + 1])
    page = rows[: filters.limit]
    more = len(rows) > filters.limit
    return page, _make_cursor(tenant_id, filters.state, page[-1]) if more else None


@router.get(
    "",
    auth=PersonalReader(),
    response={200: ApprovalsOut, API_ERRORS: ErrorOut},
    summary="List a tenant's approval requests (pending first)",
)
def approvals_list(request: HttpRequest, query: Query[ApprovalsQuery]) -> dict[str, Any]:
    """A page of the tenant's approval requests: by default the pending ones, oldest first;
    ``state=approved|rejected|expired|all`` lists the others, newest first. Page on with
    ``cursor=<next_cursor>``. Any role may read. A bad parameter is E10350 naming it; a
    tenant the person does not belong to is E10005."""
    params = _params(request)
    tenant_id = read_tenant(
        request.auth,  # type: ignore[attr-defined]
        params.pop("tenant_id", ""),
        unnamed=ErrorCode.APPROVAL_INVALID,
    )
    page, next_cursor = listed(tenant_id, _filters(params, tenant_id))
    return {"next_cursor": next_cursor, "approvals": [approval_out(r) for r in page]}


# --- deciding ---------------------------------------------------------------------------


class _Claimed(Exception):
    """A concurrent call with the same key stored its answer first."""


@dataclass(frozen=True)
class Asked:
    """A decision as asked: which request, how, and the key it may be retried with."""

    approval_id: UUID
    tenant_id: int
    approve: bool
    comment: str
    key: str | None

    @property
    def fingerprint(self) -> str:
        body = {"route": "approvals.decide", "approval": str(self.approval_id), "approve": self.approve,
                "comment": self.comment}  # fmt: skip
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _found(approval_id: str, user_id: int) -> tuple[UUID, int, str]:
    """(id, tenant, the person's role there) of a request of one of the person's tenants;
    E10354 for any other, so whether it exists does not leak."""
    try:
        pk = UUID(approval_id)
    except ValueError:
        raise InterfaceError(ErrorCode.APPROVAL_NOT_FOUND) from None
    tenant_id = ApprovalRequest.objects.filter(pk=pk).values_list("tenant_id", flat=True).first()
    role = member_role(user_id, tenant_id) if tenant_id is not None else None
    if tenant_id is None or role is None:
        raise InterfaceError(ErrorCode.APPROVAL_NOT_FOUND)
    return pk, tenant_id, role


def _replay(asked: Asked, caller: str) -> dict[str, Any] | None:
    """The stored answer of the key, None when it is new (or expired); E10304 when it
    answered another decision."""
    if asked.key is None:
        return None
    record = idempotency.stored_answer(asked.tenant_id, caller, asked.key)
    if record is None or record.expires_at <= timezone.now():
        return None
    if record.fingerprint != asked.fingerprint:
        raise InterfaceError(ErrorCode.CONTROL_IDEMPOTENCY_MISMATCH)
    return dict(record.response)


def _decide(request: HttpRequest, response: HttpResponse, approval_id: str, approve: bool, comment: str) -> Any:
    token: PersonalToken = request.auth  # type: ignore[attr-defined]
    actor = request_actor(request, user=token.user)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not KEY_PATTERN.match(key):
        raise InterfaceError(ErrorCode.CONTROL_BAD_KEY)
    pk, tenant_id, role = _found(approval_id, token.user_id)
    asked = Asked(pk, tenant_id, approve, comment, key)
    caller = f"user:{token.user_id}"  # control's callers: a person's keys are theirs alone
    if (stored := _replay(asked, caller)) is not None:
        response["Idempotent-Replayed"] = "true"
        return stored
    now = timezone.now()
    try:
        with transaction.atomic():
            decided = services.decide(
                request_id=pk, tenant_id=tenant_id, actor=actor, role=role, approve=approve, comment=comment, now=now
            )
            answer = approval_out(decided)
            # The key and its answer in the decision's transaction: a twin with the same key
            # either waits on the row's lock and finds it decided, or on the key's unique
            # index and finds it taken; either way it answers what this one stored.
            expires = now + timedelta(seconds=settings.L10.control_idempotency_ttl)
            if key is not None and not idempotency.claim(
                tenant_id, caller, key, asked.fingerprint, answer, now, expires
            ):
                raise _Claimed
    except (_Claimed, InterfaceError):
        if (stored := _replay(asked, caller)) is None:
            raise
        response["Idempotent-Replayed"] = "true"
        return stored
    return answer


def _decision_doc(verb: str) -> str:
    return (
        f"{verb} a pending request with your role in its tenant; answers the request as it now is "
        "(an approval of a request that needs two approvers leaves it pending until a second person "
        "approves). Refused: E10354 not found (or not of your tenants), E10355 already decided (the "
        "message says who and how), E10356 expired, E10357 you approved it already, E10358 a rejection "
        "without a comment, E10359 it needs an admin, E10004 a viewer. With Idempotency-Key a retry gets "
        "the first answer (Idempotent-Replayed: true); the key with another decision is E10304."
    )


@router.post(
    "/{approval_id}/approve",
    auth=PersonalBearer(),
    response={200: ApprovalOut, API_ERRORS: ErrorOut},
    summary="Approve a request (operator, or as its rule says)",
    description=_decision_doc("Approve"),
)
def approve(request: HttpRequest, response: HttpResponse, payload: DecisionIn, approval_id: str = ApprovalId) -> Any:
    return _decide(request, response, approval_id, True, payload.comment)


@router.post(
    "/{approval_id}/reject",
    auth=PersonalBearer(),
    response={200: ApprovalOut, API_ERRORS: ErrorOut},
    summary="Reject a request, saying why (operator, or as its rule says)",
    description=_decision_doc("Reject"),
)
def reject(request: HttpRequest, response: HttpResponse, payload: DecisionIn, approval_id: str = ApprovalId) -> Any:
    return _decide(request, response, approval_id, False, payload.comment)
