"""What an agent's states mean on screen, defined once (docs/architecture.md, "States").

A change is *pending* while the agent is alive and has yet to reach the state it was
told. An agent that is not reporting (unresponsive) or has failed (error) is not carrying
out anything: it shows that state, whatever was desired. A starting agent that was told
to run is simply starting. ``PENDING`` is the whole table, desired state → the observed
states in which a change is under way; the agent list's filter, the overview's count
(``fleet.sql``) and every page read it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q

# desired → {observed state with that change under way: what the page says}
# (The states' values, as ``fleet.models`` defines them; this module sits below the models.)
PENDING: dict[str, dict[str, str]] = {
    "running": {"paused": "resuming…", "stopped": "restarting…"},
    "paused": {"starting": "pausing…", "running": "pausing…"},
    "stopped": {"starting": "stopping…", "running": "stopping…", "paused": "stopping…"},
}

# Observed states whose figures are the last ones reported, not current work: the agent
# is not running tasks, or not reporting.
IDLE_STATES = frozenset({"paused", "stopped", "unresponsive"})

# Figures older than this many heartbeat intervals describe an agent that has gone quiet.
FRESH_INTERVALS = 3


def fresh_since(now: datetime) -> datetime:
    """The oldest report still current at ``now``."""
    return now - timedelta(seconds=FRESH_INTERVALS * settings.L10.agent_heartbeat_interval)


def pending_text(desired: str, observed: str) -> str | None:
    """What the page says of a change under way ("pausing…"), or None: nothing pending."""
    return PENDING.get(desired, {}).get(observed)


def is_pending(desired: str, observed: str) -> bool:
    return pending_text(desired, observed) is not None


def pending_q() -> Q:
    """``is_pending`` as a filter."""
    found = Q(pk__in=[])
    for desired, observed in PENDING.items():
        found |= Q(desired_state=desired, observed_state__in=list(observed))
    return found


def pending_sql() -> str:
    """``is_pending`` as a SQL condition on an agent row (constants only)."""
    parts = []
    for desired, observed in PENDING.items():
        listed = ", ".join(f"'{state}'" for state in observed)
        parts.append(f"(desired_state = '{desired}' AND observed_state IN ({listed}))")
    return "(" + " OR ".join(parts) + ")"


def metrics_stale(observed: str, metrics_at: datetime | None, now: datetime) -> bool:
    """True when an agent's figures are not current: it is paused, stopped or silent, or
    its latest report is older than ``fresh_since(now)``."""
    return observed in IDLE_STATES or metrics_at is None or metrics_at < fresh_since(now)
