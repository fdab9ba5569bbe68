"""Live pages: ``/ws/live/<slug>/?view=overview|agents|agent&agent=<id>&since=<seq>``.

Every page of the console opens one socket. The server sends back the same partials the
views render, and the page swaps each element with the same id:

- the overview: every ``L10_LIVE_OVERVIEW_INTERVAL`` seconds while any is open, its tiles
  (``#overview-tiles``, read fresh) and the newest end of its charts (the last whole step
  and the step in progress, ``dashboard.charts.fleet_tail``), in one
  ``{"type": "overview"}`` frame: one read and one render per tenant and interval, however
  many pages are open;
- the agent list: the row of every changed agent the page shows (``#agent-<id>``); the page
  says which with ``{"type": "watch", "agents": [ids]}`` after each load or swap;
- an agent's detail: its summary (``#agent-summary``), and after anything but a heartbeat
  of that agent (new events, a control action) ``{"type": "refresh", "parts":
  ["agent-events", "agent-controls"]}``: the page reads those cards again (they follow the
  reader's event filter);
- every page: on connecting (when not 0) and after any alert event, ``{"type": "badge",
  "count": n}``, the header's count of firing alerts nobody has acknowledged or snoozed
  (after an event, read once for all the pages); a live page's HTML leaves the badge to
  this, so a cached page costs no count; the alerts page (``view=alerts``) also reads its
  rows again;
- the cost page (``view=costs``): after usage is stored (hub topic ``costs.spent``),
  ``{"type": "refresh", "parts": ["cost-budgets"]}`` at most every ``COSTS_EVERY`` seconds:
  the page reads its budgets, their burn rates and countdowns again; an agent's page whose
  agent used something gets its summary (quota bars and countdowns) rendered again, and
  ``{"type": "refresh", "parts": ["agent-costs"]}`` on the same beat (its costs card and
  the budgets that cover it);
- approvals: after any ``approval.*`` hub topic (asked, a first of two approvals, decided),
  ``{"type": "approvals", "count": n}`` to every page, the header's count of pending
  requests (also on connecting, when not 0; a live page's HTML leaves it to this, as the
  alert badge); ``{"type": "refresh", "parts": ["approval-pending", "approval-history",
  "approval-request"]}`` to the approvals pages (``view=approvals``: the inbox and one
  request); and ``{"type": "refresh", "parts": ["agent-approvals"]}`` to the pages of the
  agents that asked;
- a control batch (``view=batch&batch=<id>``): ``{"type": "refresh"}`` at each step of its
  progress, and the page reads its progress part again (it holds the reader's undo form).

Rendering is shared: one ``LiveTenant`` per hub and tenant collects what changed for a
short moment (``FLUSH_DELAY``), renders each needed fragment once in a worker thread and
hands it to every socket that shows it. A page that connects with the sequence number it
was rendered at, or that reconnects, gets ``{"type": "resync"}`` when events happened
meanwhile, and reloads its live parts over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.urls import reverse

from alerts.selectors import attention_count, badge_count
from approvals.selectors import pending_count
from control.models import Batch
from core import inputs, jinja
from core.errors import ErrorCode, InterfaceError
from dashboard import charts, fragments, selectors
from fleet.models import Agent
from fleet.selectors import agents_by_ids
from fleet.series import MetricsUnavailable
from realtime.hub import Hub, HubEvent
from realtime.sockets import HubSocket, query_param, session_principals
from tenancy.models import Membership, Tenant
from tenancy.signals import member_principal

log = logging.getLogger(__name__)

VIEWS = ("overview", "agents", "agent", "batch", "alerts", "costs", "approvals")
FLUSH_DELAY = 0.2  # seconds: changes arriving together are rendered once
MAX_WATCHED = 200
# An agent's events and control actions, on its page, are read again after these.
QUIET_TOPICS = frozenset({"agent.heartbeat"})
CARD_TOPICS = frozenset({"agent.events"})  # news for the cards only: rows and summaries stay
# Each stored event, for the events page's tail: the pages here hear of an agent's events
# once per batch, from ``agent.events``.
TAIL_TOPICS = frozenset({"events.stored"})
AGENT_CARDS = ["agent-events", "agent-controls"]
# Usage stored: the agents' summaries (quota bars and countdowns) are rendered again, and
# the cost page reads its budgets again, at most every ``COSTS_EVERY`` seconds.
SPENT_TOPIC = "costs.spent"
COSTS_EVERY = 5.0
COST_PARTS = ["cost-budgets"]
AGENT_COST_PARTS = ["agent-costs"]
# An approval asked or decided: the header's count everywhere, the approvals pages' lists
# and request, the asking agent's card.
APPROVAL_TOPICS = "approval."
APPROVAL_PARTS = ["approval-pending", "approval-history", "approval-request"]
AGENT_APPROVAL_PARTS = ["agent-approvals"]


@dataclass
class Rendered:
    rows: dict[str, str] = field(default_factory=dict)
    summaries: dict[str, str] = field(default_factory=dict)


def _viewing_membership(tenant: Tenant) -> Membership:
    # The fragments depend on the tenant, not on who reads them (as the cached parts).
    return Membership(tenant=tenant, role="viewer")


@database_sync_to_async
def render_parts(tenant_id: int, rows: set[str], summaries: set[str]) -> Rendered:
    tenant = Tenant.objects.get(pk=tenant_id)
    current = _viewing_membership(tenant)
    out = Rendered()
    if rows:
        agents_url = reverse("dashboard:agents", args=[tenant.slug])
        for agent in agents_by_ids(tenant_id, rows):
            out.rows[str(agent.pk)] = jinja.render(
                "dashboard/_agent_row.html", {"agent": agent, "agents_url": agents_url}
            )
    for agent in Agent.objects.filter(tenant_id=tenant_id, pk__in=summaries).select_related("desired_changed_by"):
        detail = selectors.agent_detail(agent, events=None)  # the summary shows its quotas, no events
        out.summaries[str(agent.pk)] = jinja.render(
            "dashboard/_agent_summary.html", {"detail": detail, "agent": agent, "current": current}
        )
    return out


@database_sync_to_async
def render_overview(tenant_id: int) -> dict[str, Any]:
    """The live overview's frame: the tiles read now, and the charts' newest end (None
    when the metrics store fails: the pages keep what they drew)."""
    tenant = Tenant.objects.get(pk=tenant_id)
    html = fragments.fresh_overview_tiles(_viewing_membership(tenant))
    try:
        tails: dict[str, Any] | None = charts.fleet_tail(tenant_id)
    except MetricsUnavailable as exc:
        log.warning("live overview of tenant %s without charts: %s", tenant_id, exc)
        tails = None
    return {"html": html, "tails": tails}


class LiveTenant:
    """What changed in one tenant since the last render, for this process's live pages."""

    def __init__(self, tenant_id: int) -> None:
        self.tenant_id = tenant_id
        self.sockets: set[LiveConsumer] = set()
        self.seq = 0
        self.dirty: set[str] = set()
        self.noted: set[str] = set()  # agents with news for their events and control cards
        self.alerts_changed = False
        self.spent: set[str] = set()  # agents whose usage was stored: their summaries only
        self.costs_changed = False
        self.costs_agents: set[str] = set()  # agents that spent since the pages were last told
        self.costs_told = 0.0  # loop time the cost pages were last told to read again
        self.approvals_changed = False
        self.approvals_agents: set[str] = set()  # agents whose requests were asked or decided
        self.scheduled = False
        self.rendering = False
        self.ticker: asyncio.Task[None] | None = None

    def add(self, socket: LiveConsumer) -> None:
        self.sockets.add(socket)
        if socket.view == "overview" and self.ticker is None:
            self.ticker = asyncio.get_running_loop().create_task(self._tick())

    def discard(self, socket: LiveConsumer) -> None:
        self.sockets.discard(socket)
        if self.ticker is not None and not self._overview_pages():
            self.ticker.cancel()
            self.ticker = None

    def _overview_pages(self) -> list[LiveConsumer]:
        return [s for s in self.sockets if s.view == "overview"]

    async def _tick(self) -> None:
        """While overview pages are open: read and render once, send to all, every interval."""
        loop = asyncio.get_running_loop()
        interval = settings.L10.live_overview_interval
        try:
            while self._overview_pages():
                started, seq = loop.time(), self.seq
                try:
                    frame = await render_overview(self.tenant_id)
                except Exception:
                    # The pages keep their "updated N s ago", which now grows: nothing is hidden.
                    log.exception("could not render the live overview of tenant %s", self.tenant_id)
                else:
                    text = json.dumps({"type": "overview", "seq": seq, **frame})
                    for socket in self._overview_pages():
                        socket.put(text)
                await asyncio.sleep(max(0.0, interval - (loop.time() - started)))
        finally:
            if self.ticker is asyncio.current_task():  # the next overview page starts another
                self.ticker = None

    def mark(self, event: HubEvent) -> None:
        if event.seq <= self.seq:
            return  # another of this tenant's pages already handed it over
        self.seq = event.seq
        if event.topic in TAIL_TOPICS:
            return
        if event.topic.startswith("alert."):
            self.alerts_changed = True
        if event.topic.startswith(APPROVAL_TOPICS):
            # Nothing of the agent's row or summary: its approvals card only.
            self.approvals_changed = True
            if event.data.get("agent_id"):
                self.approvals_agents.add(str(event.data["agent_id"]))
            self.schedule()
            return
        if event.topic == SPENT_TOPIC:
            self.costs_changed = True
            spent = {str(a) for a in event.data.get("agent_ids") or ()}
            if event.data.get("all"):
                spent |= {s.agent_id for s in self.sockets if s.view == "agent" and s.agent_id}
            self.spent |= spent
            self.costs_agents |= spent
            self.schedule()
            return
        agent_id = event.data.get("agent_id")
        if agent_id:
            if event.topic not in CARD_TOPICS:
                self.dirty.add(str(agent_id))
            if event.topic not in QUIET_TOPICS:
                self.noted.add(str(agent_id))
        self.schedule()

    def schedule(self, delay: float = FLUSH_DELAY) -> None:
        if not self.scheduled and not self.rendering:
            self.scheduled = True
            asyncio.get_running_loop().call_later(delay, self._start)

    def _start(self) -> None:
        self.scheduled = False
        asyncio.get_running_loop().create_task(self.flush())

    async def flush(self) -> None:
        dirty, self.dirty = self.dirty, set()
        noted, self.noted = self.noted, set()
        alerts_changed, self.alerts_changed = self.alerts_changed, False
        spent, self.spent = self.spent, set()
        approvals_changed, self.approvals_changed = self.approvals_changed, False
        approvals_agents, self.approvals_agents = self.approvals_agents, set()
        seq = self.seq
        if alerts_changed:
            await self._send_badge(seq)
        if approvals_changed:
            await self._send_approvals(seq, approvals_agents)
        self._tell_costs(seq)
        if noted:
            told = json.dumps({"type": "refresh", "seq": seq, "parts": AGENT_CARDS})
            for socket in list(self.sockets):
                if socket.view == "agent" and socket.agent_id in noted:
                    socket.put(told)
        rows = {a for s in self.sockets if s.view == "agents" for a in s.watching or ()} & dirty
        summaries = {s.agent_id for s in self.sockets if s.view == "agent" and s.agent_id} & (dirty | spent)
        if rows or summaries:
            self.rendering = True
            try:
                rendered = await render_parts(self.tenant_id, rows, summaries)
            except Exception:
                log.exception("could not render live parts of tenant %s; pages resync", self.tenant_id)
                for socket in list(self.sockets):
                    socket.resync()
                return
            finally:
                self.rendering = False
            for socket in list(self.sockets):
                socket.send_parts(rendered, seq)
        if self.dirty or self.noted or self.alerts_changed or self.spent or self.approvals_changed:
            self.schedule()
        elif self.costs_changed:
            self.schedule(max(FLUSH_DELAY, self.costs_told + COSTS_EVERY - asyncio.get_running_loop().time()))

    def _tell_costs(self, seq: int) -> None:
        """The cost pages read their budgets again, and the pages of the agents that spent
        their costs card: at most every ``COSTS_EVERY`` seconds."""
        now = asyncio.get_running_loop().time()
        if not self.costs_changed or now - self.costs_told < COSTS_EVERY:
            return
        agents, self.costs_agents = self.costs_agents, set()
        self.costs_changed = False
        told = {
            "costs": json.dumps({"type": "refresh", "seq": seq, "parts": COST_PARTS}),
            "agent": json.dumps({"type": "refresh", "seq": seq, "parts": AGENT_COST_PARTS}),
        }
        pages = [s for s in self.sockets if s.view == "costs" or (s.view == "agent" and s.agent_id in agents)]
        if pages:
            self.costs_told = now
        for socket in pages:
            socket.put(told[socket.view])

    async def _send_badge(self, seq: int) -> None:
        try:
            count = await database_sync_to_async(attention_count)(self.tenant_id)
        except Exception:
            log.exception("could not count the alerts of tenant %s", self.tenant_id)
            return
        badge = json.dumps({"type": "badge", "seq": seq, "count": count})
        rows = json.dumps({"type": "refresh", "seq": seq, "parts": ["alert-rows"]})
        for socket in list(self.sockets):
            socket.put(badge)
            if socket.view == "alerts":
                socket.put(rows)

    async def _send_approvals(self, seq: int, agents: set[str]) -> None:
        """The header's count of pending requests to every page (read once for all); the
        approvals pages and the asking agents' pages read their parts again."""
        told = {
            "approvals": json.dumps({"type": "refresh", "seq": seq, "parts": APPROVAL_PARTS}),
            "agent": json.dumps({"type": "refresh", "seq": seq, "parts": AGENT_APPROVAL_PARTS}),
        }
        try:
            count: int | None = await database_sync_to_async(pending_count)(self.tenant_id)
        except Exception:
            log.exception("could not count the pending approvals of tenant %s", self.tenant_id)
            count = None
        badge = json.dumps({"type": "approvals", "seq": seq, "count": count})
        for socket in list(self.sockets):
            if count is not None:
                socket.put(badge)
            if socket.view == "approvals" or (socket.view == "agent" and socket.agent_id in agents):
                socket.put(told[socket.view])


_tenants: dict[tuple[int, int], LiveTenant] = {}


def live_tenant(hub: Hub, tenant_id: int) -> LiveTenant:
    key = (id(hub), tenant_id)
    found = _tenants.get(key)
    if found is None:
        found = _tenants[key] = LiveTenant(tenant_id)
    return found


def _object_id(value: str, name: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise InterfaceError(ErrorCode.WS_BAD_FRAME, f"{name} must be an id.") from None


@database_sync_to_async
def _authorize(user: Any, slug: str, view: str, scope: dict[str, Any]) -> tuple[int, str | None]:
    """The tenant, and the agent or batch the page shows (for those views)."""
    if not user.is_authenticated:
        raise InterfaceError(ErrorCode.WS_UNAUTHORIZED, "Log in to receive live updates.")
    membership = Membership.objects.select_related("tenant").filter(user_id=user.pk, tenant__slug=slug).first()
    if membership is None:
        raise InterfaceError(ErrorCode.WS_TENANT_FORBIDDEN)
    if view not in VIEWS:
        raise InterfaceError(ErrorCode.WS_BAD_FRAME, f"view must be one of {', '.join(VIEWS)}.")
    if view == "agent":
        agent_id = _object_id(query_param(scope, "agent"), "agent")
        if not Agent.objects.filter(tenant_id=membership.tenant_id, pk=agent_id).exists():
            raise InterfaceError(ErrorCode.WS_TENANT_FORBIDDEN, "No such agent in this tenant.")
        return membership.tenant_id, str(agent_id)
    if view == "batch":
        batch_id = _object_id(query_param(scope, "batch"), "batch")
        if not Batch.objects.filter(tenant_id=membership.tenant_id, pk=batch_id).exists():
            raise InterfaceError(ErrorCode.WS_TENANT_FORBIDDEN, "No such batch in this tenant.")
        return membership.tenant_id, str(batch_id)
    return membership.tenant_id, None


class LiveConsumer(HubSocket):
    kind = "live"
    view = "overview"
    agent_id: str | None = None
    batch_id: str | None = None
    watching: frozenset[str] | None = None  # the list's rows, once the page has said
    joined_seq = 0
    live: LiveTenant | None = None

    async def open(self) -> int:
        slug = self.scope["url_route"]["kwargs"]["slug"]
        self.view = query_param(self.scope, "view") or "overview"
        user = self.scope.get("user") or AnonymousUser()
        tenant_id, shown = await _authorize(user, slug, self.view, self.scope)
        if self.view == "agent":
            self.agent_id = shown
        elif self.view == "batch":
            self.batch_id = shown
        # Signing out of this session, or leaving the tenant, closes the socket (E10205,
        # 4401); the page then says so.
        self.principals = (*session_principals(self.scope), member_principal(user.pk or 0, tenant_id))
        return tenant_id

    async def joined(self, current_seq: int) -> None:
        if self.hub is None or self.tenant_id is None:
            return
        self.live = live_tenant(self.hub, self.tenant_id)
        self.live.add(self)
        self.joined_seq = max(current_seq, self.live.seq)
        since = query_param(self.scope, "since")
        missed = self.hub.since(self.tenant_id, int(since)) if since.isdigit() else None
        # Without a number the page cannot tell what it has: it reloads its parts.
        if missed != []:
            self.put(json.dumps({"type": "resync", "seq": current_seq}))
        else:
            self.put(json.dumps({"type": "hello", "seq": current_seq}))
        # A live page's header badge is filled from here, not in its (often cached) HTML.
        count = await database_sync_to_async(badge_count)(self.tenant_id)
        if count:
            self.put(json.dumps({"type": "badge", "seq": current_seq, "count": count}))
        asking = await database_sync_to_async(pending_count)(self.tenant_id)
        if asking:
            self.put(json.dumps({"type": "approvals", "seq": current_seq, "count": asking}))

    async def disconnect(self, code: int) -> None:
        if self.live is not None:
            self.live.discard(self)
            if not self.live.sockets and self.hub is not None:
                _tenants.pop((id(self.hub), self.live.tenant_id), None)
            self.live = None
        await super().disconnect(code)

    def deliver(self, event: HubEvent) -> None:
        if self.batch_id is not None:
            if event.topic == "control.batch" and str(event.data.get("batch_id")) == self.batch_id:
                self.put(json.dumps({"type": "refresh", "seq": event.seq}))
        elif self.live is not None:
            self.live.mark(event)

    def send_parts(self, rendered: Rendered, seq: int) -> None:
        html = ""
        if self.view == "agents":
            html = "".join(rendered.rows[a] for a in self.watching or () if a in rendered.rows)
        elif self.agent_id is not None:
            html = rendered.summaries.get(self.agent_id, "")
        if html:
            self.put(json.dumps({"type": "fragments", "seq": seq, "html": html}))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.hub is None:
            return
        try:
            frame = inputs.loads(text_data or "")
        except inputs.InputProblem as exc:
            return self.bad(f"Frames must be JSON objects: {exc}.")
        kind = frame.get("type") if isinstance(frame, dict) else None
        allowed = ("type", "agents") if kind == "watch" else ("type",)
        extra = inputs.unknown_keys(frame, allowed) if isinstance(frame, dict) else []
        if extra:
            return self.bad(f"Unknown field(s) {', '.join(extra)} in a {kind} frame.")
        if kind == "pong":
            self.pong()
        elif kind == "watch" and isinstance(frame, dict):
            self.watch(frame.get("agents"))
        else:
            self.bad("Send watch or pong frames.")

    def watch(self, agents: Any) -> None:
        if not isinstance(agents, list) or len(agents) > MAX_WATCHED:
            return self.bad(f'"agents" must be a list of at most {MAX_WATCHED} agent ids.')
        try:
            watching = frozenset(str(UUID(str(a))) for a in agents)
        except ValueError:
            return self.bad('"agents" must hold agent ids.')
        first, self.watching = self.watching is None, watching
        if first and self.live is not None and self.live.seq > self.joined_seq:
            # Rows changed between joining and this first word of what is shown.
            self.put(json.dumps({"type": "resync", "seq": self.live.seq}))

    def bad(self, message: str) -> None:
        self.put(json.dumps(self.error_frame(InterfaceError(ErrorCode.WS_BAD_FRAME, message))))
