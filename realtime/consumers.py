"""The event socket: ``/ws/events?tenant_id=<slug or id>`` (docs/api.md, "The event socket").

Authentication: a browser's session (the ``Origin`` must be one of ours), or
``Authorization: Bearer <API token>`` (programs; ``Origin`` optional): a tenant's token, or
a person's (``l10p_…``), which watches the tenants its person belongs to. The socket closes
when that token is revoked or expires, or that session signs out (E10205, 4401). Frames,
all JSON:

- client ``{"type": "subscribe", "topics": [...], "since": <seq, optional>}``, answered
  ``{"type": "subscribed", "topics": [...], "seq": <latest>}``; with ``since``, the events
  missed since then follow, or ``{"type": "resync", "seq": ...}`` when they cannot be
  told (read the current state afresh);
- client ``{"type": "unsubscribe", "topics": [...]}``, answered ``{"type": "unsubscribed", ...}``;
- server ``{"type": "event", "seq": N, "topic": ..., "data": {...}}``;
- server ``{"type": "ping"}`` every ``L10_WS_HEARTBEAT_INTERVAL`` s, client
  ``{"type": "pong"}``; a client that misses two pings is closed (4408);
- server ``{"type": "error", "code": "E102xx", "message", "recoverable"}``: for a bad frame
  the socket stays open; before a close for refusals (4401 not authenticated, or an
  expired token: E10007; 4403 not a member of the tenant, or a token without the ``read``
  scope: E10008; 1013 the process is at ``L10_WS_MAX_CONNECTIONS``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth.models import AnonymousUser

from core import inputs
from core.errors import ErrorCode, InterfaceError
from core.tokens import PERSONAL_SCHEME, looks_like_token
from realtime.hub import TOPICS, HubEvent
from realtime.sockets import HubSocket, bearer, query_param, session_principals
from tenancy.models import Membership, Scope
from tenancy.selectors import tenant_by_ref
from tenancy.services import personal_token_authenticate, token_authenticate
from tenancy.signals import api_token_principal, member_principal, personal_token_principal

MAX_FRAME_CHARS = 16_384
MAX_TOPICS = 32


def _forbidden(message: str = "You do not belong to that tenant.") -> InterfaceError:
    return InterfaceError(ErrorCode.WS_TENANT_FORBIDDEN, message)


@dataclass(frozen=True)
class Access:
    """What a socket may watch, and the grants it holds that (``HubSocket.principals``)."""

    tenant_id: int
    principals: tuple[str, ...]
    ends_at: datetime | None = None


@database_sync_to_async
def authorize(scope: dict[str, Any], tenant_ref: str) -> Access:
    """The tenant the caller may watch, or InterfaceError (E10201 / E10202)."""
    if not tenant_ref:
        raise _forbidden("Name the tenant: /ws/events?tenant_id=<tenant slug or id>.")
    token = bearer(scope)
    user = scope.get("user") or AnonymousUser()
    tenant = tenant_by_ref(tenant_ref)
    if token and looks_like_token(token, PERSONAL_SCHEME):
        personal = personal_token_authenticate(token, scope=Scope.READ)  # as a tenant's token, below
        if tenant is None or not Membership.objects.filter(user_id=personal.user_id, tenant=tenant).exists():
            raise _forbidden()
        principals = (personal_token_principal(personal.pk), member_principal(personal.user_id, tenant.pk))
        return Access(int(tenant.pk), principals, personal.expires_at)
    if token:
        api_token = token_authenticate(token, scope=Scope.READ)  # raises E10002/E10003/E10007/E10008
        if tenant is None or api_token.tenant_id != tenant.pk:
            raise _forbidden("This token belongs to another tenant.")
        return Access(int(tenant.pk), (api_token_principal(api_token.pk),), api_token.expires_at)
    # A cookie only counts on a socket whose Origin was checked: a page on another
    # site cannot open a socket with the user's session.
    if not scope.get("l10_origin") or not user.is_authenticated:
        raise InterfaceError(ErrorCode.WS_UNAUTHORIZED, "Log in, or send Authorization: Bearer <API token>.")
    if tenant is None or not Membership.objects.filter(user_id=user.pk or 0, tenant=tenant).exists():
        raise _forbidden()
    return Access(int(tenant.pk), (*session_principals(scope), member_principal(user.pk or 0, tenant.pk)))


# The fields each client frame may carry; any other is refused (E10203).
FRAME_KEYS: dict[object, tuple[str, ...]] = {
    "ping": ("type",),
    "pong": ("type",),
    "subscribe": ("type", "topics", "since"),
    "unsubscribe": ("type", "topics"),
}


class EventsConsumer(HubSocket):
    kind = "events"
    topics: frozenset[str] = frozenset()

    async def open(self) -> int:
        if "l10_trusted_tenant" in self.scope:  # WebSocketGateway: its endpoint vouched for it
            trusted = self.scope["l10_trusted_tenant"]
            if trusted is None:
                raise _forbidden("No such tenant.")
            return int(trusted)
        try:
            access = await authorize(self.scope, query_param(self.scope, "tenant_id").strip())
            self.principals, self.access_ends_at = access.principals, access.ends_at
            return access.tenant_id
        except InterfaceError as exc:
            if exc.code in (ErrorCode.TOKEN_INVALID, ErrorCode.TOKEN_REVOKED):
                raise InterfaceError(ErrorCode.WS_UNAUTHORIZED, exc.message) from exc
            raise

    def deliver(self, event: HubEvent) -> None:
        if event.topic in self.topics:
            self.put(event.frame)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.hub is None:
            return
        if text_data is None:
            return self.bad("Frames must be JSON text, not binary.")
        if len(text_data) > MAX_FRAME_CHARS:
            return self.bad(f"Frames may be at most {MAX_FRAME_CHARS} characters.")
        try:
            frame = inputs.loads(text_data)
        except inputs.InputProblem as exc:
            return self.bad(f"Frames must be JSON objects: {exc}.")
        kind = frame.get("type") if isinstance(frame, dict) and isinstance(frame.get("type"), str) else None
        extra = inputs.unknown_keys(frame, FRAME_KEYS.get(kind, ("type",))) if isinstance(frame, dict) else []
        if extra:
            return self.bad(f"Unknown field(s) {', '.join(extra)} in a {kind} frame.")
        if kind == "pong":
            self.pong()
        elif kind == "ping":
            self.pong()  # a client that pings is alive too
            self.put('{"type":"pong"}')
        elif kind in ("subscribe", "unsubscribe"):
            self.change_topics(kind, frame)
        else:
            self.bad("Unknown frame type; send subscribe, unsubscribe or pong.")

    def change_topics(self, kind: str, frame: dict[str, Any]) -> None:
        topics = frame.get("topics")
        if (
            not isinstance(topics, list)
            or not topics
            or len(topics) > MAX_TOPICS
            or not all(isinstance(t, str) for t in topics)
        ):
            return self.bad(f'"topics" must be a list of 1 to {MAX_TOPICS} topic names.')
        unknown = sorted(set(topics) - TOPICS)
        if unknown:
            return self.bad(f"Unknown topic(s) {', '.join(unknown)}; topics are {', '.join(sorted(TOPICS))}.")
        since = frame.get("since")
        if since is not None and (not isinstance(since, int) or isinstance(since, bool) or since < 0):
            return self.bad('"since" must be the sequence number of the last event received.')
        if self.hub is None or self.tenant_id is None:
            return None
        latest = self.hub.last_seq.get(self.tenant_id, 0)
        if kind == "unsubscribe":
            self.topics = self.topics - set(topics)
            self.put(json.dumps({"type": "unsubscribed", "topics": sorted(self.topics), "seq": latest}))
            return
        self.topics = self.topics | set(topics)
        self.put(json.dumps({"type": "subscribed", "topics": sorted(self.topics), "seq": latest}))
        if since is not None:
            missed = self.hub.since(self.tenant_id, since)
            if missed is None:
                self.put(json.dumps({"type": "resync", "seq": latest}))
            else:
                for event in missed:
                    self.deliver(event)

    def bad(self, message: str) -> None:
        self.put(json.dumps(self.error_frame(InterfaceError(ErrorCode.WS_BAD_FRAME, message))))
