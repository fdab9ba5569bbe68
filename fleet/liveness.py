"""Periodic writes of the fleet: agents gone silent, and emergency stops not confirmed.

Both run on the cadence of ``L10_AGENT_HEARTBEAT_INTERVAL`` (``fleet.tasks``) and are safe
to run twice at once: rows are claimed with ``SELECT … FOR UPDATE SKIP LOCKED`` and a
conditional update, so each agent is marked (and its event written) once.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core import tenant_cache
from events.models import Severity
from events.services import NewEvent, events_record
from fleet.models import Agent, DesiredState, ObservedState
from realtime import hub

log = logging.getLogger(__name__)

# Silent for this many heartbeat intervals: unresponsive; a stop unconfirmed that long: flagged.
SILENT_INTERVALS = 3


def _noticed(
    kind: str, agent_id: UUID, now: datetime, severity: str, message: str, data: dict[str, Any],
    external_id: str | None = None,
) -> NewEvent:  # fmt: skip
    """The event recording what the console noticed about an agent."""
    return NewEvent(
        type=kind, occurred_at=now, agent_id=agent_id, severity=severity, message=message, data=data,
        external_id=external_id,
    )  # fmt: skip


def _deadline(now: datetime) -> datetime:
    return now - timedelta(seconds=settings.L10.agent_heartbeat_interval * SILENT_INTERVALS)


def agents_mark_unresponsive(*, now: datetime | None = None) -> list[UUID]:
    """Mark agents silent for three heartbeat intervals ``unresponsive``; returns their ids.

    A confirmed-stopped agent is expected to go quiet and is left alone. Each marking is
    recorded as an ``agent.unresponsive`` event.
    """
    now = now or timezone.now()
    cutoff = _deadline(now)
    quiet = ObservedState.UNRESPONSIVE, ObservedState.STOPPED
    columns = ("pk", "tenant_id", "observed_state", "last_heartbeat_at", "external_id", "desired_state")
    with transaction.atomic():
        candidates = Agent.objects.select_for_update(skip_locked=True).exclude(observed_state__in=quiet)
        rows = list(candidates.filter(last_heartbeat_at__lt=cutoff).values_list(*columns)) + list(
            candidates.filter(last_heartbeat_at__isnull=True, registered_at__lt=cutoff).values_list(*columns)
        )
        if not rows:
            return []
        ids = [row[0] for row in rows]
        Agent.objects.filter(pk__in=ids).update(
            observed_state=ObservedState.UNRESPONSIVE, observed_changed_at=now, updated_at=now
        )
        by_tenant: dict[int, list[tuple[UUID, str, datetime | None, str, str]]] = defaultdict(list)
        for pk, tenant_id, previous, last, external_id, desired in rows:
            by_tenant[tenant_id].append((pk, previous, last, external_id, desired))
        for tenant_id, silent in by_tenant.items():
            events_record(
                tenant_id=tenant_id,
                events=[
                    _noticed(
                        "agent.unresponsive",
                        pk,
                        now,
                        Severity.WARNING,
                        f"No heartbeat since {last.isoformat() if last else 'registration'}; was {previous}.",
                        {"previous_state": previous, "last_heartbeat_at": last.isoformat() if last else None},
                        external_id,
                    )
                    for pk, previous, last, external_id, _ in silent
                ],
            )
            tenant_cache.invalidate(tenant_id)
            hub.publish_many(
                tenant_id,
                "agent.state.changed",
                (
                    {
                        "agent_id": pk,
                        "external_id": external_id,
                        "state": ObservedState.UNRESPONSIVE,
                        "previous_state": previous,
                        "desired_state": desired,
                        "timestamp": now,
                    }
                    for pk, previous, _, external_id, desired in silent
                ),
            )
    log.info("marked %d agent(s) unresponsive", len(ids))
    return ids


def agents_flag_unconfirmed_stops(*, now: datetime | None = None) -> list[UUID]:
    """Flag emergency stops the agent has not confirmed within three heartbeat intervals:
    each once, with a critical ``agent.stop_unconfirmed`` event; returns the agents' ids. The
    alerts app's rule "Emergency stop not confirmed" raises the alert (docs/alerts.md).

    The claim is a conditional update (``stop_unconfirmed_at IS NULL``), so two runs at
    once flag an agent once.
    """
    now = now or timezone.now()
    flagged: list[UUID] = []
    with transaction.atomic():
        overdue = list(
            Agent.objects.select_for_update(skip_locked=True)
            .filter(
                desired_state=DesiredState.STOPPED,
                desired_changed_at__lt=_deadline(now),
                stop_unconfirmed_at__isnull=True,
            )
            .exclude(observed_state=ObservedState.STOPPED)
            .values_list("pk", "tenant_id", "observed_state", "desired_changed_at")
        )
        for pk, tenant_id, observed, asked in overdue:
            if not Agent.objects.filter(pk=pk, stop_unconfirmed_at__isnull=True).update(stop_unconfirmed_at=now):
                continue
            flagged.append(pk)
            event = _noticed(
                "agent.stop_unconfirmed", pk, now, Severity.CRITICAL,
                f"The emergency stop is not confirmed; the agent reports {observed}.",
                {"observed_state": observed, "requested_at": asked.isoformat() if asked else None},
            )  # fmt: skip
            events_record(tenant_id=tenant_id, events=[event])
            tenant_cache.invalidate(tenant_id)  # the alert itself is the alerts app's rule (docs/alerts.md)
    if flagged:
        log.warning("%d emergency stop(s) not confirmed in time", len(flagged))
    return flagged
