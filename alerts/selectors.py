"""Reads of alerting: a tenant's alerts as the on-call page lists them, the count its
header badge shows, and one alert's timeline."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.core.cache import cache
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from alerts.models import OPEN_STATES, Alert, AlertState, AlertTransition, Delivery, Silence
from alerts.sql import WINDOWED, per_minute
from fleet.labels import BadSelector, Requirement, parse_selector, with_selector
from fleet.models import Agent, MetricMinute

log = logging.getLogger(__name__)

STATUSES = ("open", "firing", "pending", "acknowledged", "snoozed", "resolved", "all")


def needs_attention(now: datetime) -> Q:
    """Firing, not acknowledged (or its acknowledgement lapsed), not snoozed."""
    return (
        Q(state=AlertState.FIRING)
        & (Q(acknowledged_at__isnull=True) | Q(acknowledged_until__lte=now))
        & (Q(snoozed_until__isnull=True) | Q(snoozed_until__lte=now))
    )


def silenced_agents(tenant_id: int, now: datetime) -> set[UUID]:
    """The agents an active silence of the tenant matches (one query per active silence;
    a matcher was checked when the silence was made)."""
    agents: set[UUID] = set()
    for matcher in Silence.objects.filter(tenant_id=tenant_id, starts_at__lte=now, ends_at__gt=now).values_list(
        "matcher", flat=True
    ):
        try:
            requirements = parse_selector(matcher)
        except BadSelector:
            continue
        agents |= set(
            with_selector(Agent.objects.filter(tenant_id=tenant_id), requirements).values_list("pk", flat=True)
        )
    return agents


def attention_count(tenant_id: int, now: datetime | None = None) -> int:
    """The header badge: the tenant's firing alerts nobody has acknowledged or snoozed, and
    no silence covers."""
    now = now or timezone.now()
    alerts = Alert.objects.filter(needs_attention(now), tenant_id=tenant_id)
    silenced = silenced_agents(tenant_id, now)
    if silenced:
        alerts = alerts.exclude(agent_id__in=silenced)
    return alerts.count()


BADGE_TTL = 15  # seconds: a snooze or acknowledgement that lapses shows within this


def _badge_key(tenant_id: int) -> str:
    return f"alerts:badge:{tenant_id}"


def badge_count(tenant_id: int) -> int:
    """``attention_count`` as every page's header shows it: from the cache (dropped at each
    change, ``badge_changed``), so a page load costs no query; from the database when the
    cache cannot answer."""
    try:
        found = cache.get(_badge_key(tenant_id))
    except Exception:  # the cache is down: the page still shows the count
        return attention_count(tenant_id)
    if found is not None:
        return int(found)
    count = attention_count(tenant_id)
    with contextlib.suppress(Exception):
        cache.set(_badge_key(tenant_id), count, BADGE_TTL)
    return count


def badge_changed(tenant_id: int) -> None:
    """Drop the cached badge once the current transaction commits."""

    def drop() -> None:
        try:
            cache.delete(_badge_key(tenant_id))
        except Exception:
            log.warning("could not drop the alert badge of tenant %s; it lapses in %s s", tenant_id, BADGE_TTL)

    transaction.on_commit(drop)


@dataclass(frozen=True)
class AlertFilter:
    status: str = "open"
    severity: str = ""
    rule_id: int | None = None
    agent: str = ""  # name or external id, contains
    labels: tuple[Requirement, ...] = ()  # the agent's labels, the agent list's selector


def alert_list(tenant_id: int, query: AlertFilter, now: datetime | None = None) -> QuerySet[Alert]:
    now = now or timezone.now()
    alerts = Alert.objects.filter(tenant_id=tenant_id).select_related("rule", "agent", "acknowledged_by")
    acked = Q(acknowledged_at__isnull=False) & (Q(acknowledged_until__isnull=True) | Q(acknowledged_until__gt=now))
    snoozed = Q(snoozed_until__gt=now)
    status = {
        "open": Q(state__in=OPEN_STATES),
        "firing": Q(state=AlertState.FIRING),
        "pending": Q(state=AlertState.PENDING),
        "acknowledged": Q(state__in=OPEN_STATES) & acked,
        "snoozed": Q(state__in=OPEN_STATES) & snoozed,
        "resolved": Q(state=AlertState.RESOLVED),
        "all": Q(),
    }.get(query.status, Q(state__in=OPEN_STATES))
    alerts = alerts.filter(status)
    if query.severity:
        alerts = alerts.filter(severity=query.severity)
    if query.rule_id:
        alerts = alerts.filter(rule_id=query.rule_id)
    if query.agent:
        alerts = alerts.filter(Q(agent__name__icontains=query.agent) | Q(agent__external_id__icontains=query.agent))
    if query.labels:
        alerts = alerts.filter(agent__in=with_selector(Agent.objects.filter(tenant_id=tenant_id), query.labels))
    return alerts.order_by("-started_at", "-id")


def timeline(alert: Alert) -> list[AlertTransition]:
    return list(AlertTransition.objects.filter(alert=alert).order_by("at", "id"))


def deliveries(alert: Alert) -> list[Delivery]:
    """Every message that named the alert, to each target, with its attempts."""
    return list(
        Delivery.objects.filter(notification__alerts=alert)
        .select_related("target", "notification")
        .prefetch_related("tries")
        .order_by("notification__created_at", "pk")
    )


CHART_BEFORE = timedelta(minutes=30)
CHART_AFTER = timedelta(minutes=60)
UNITS = {"cpu_percent": "%", "memory_mb": "MB", "error_rate": "%", "latency_p95_ms": "ms", "tokens_per_min": "/min"}


def alert_chart(alert: Alert, now: datetime | None = None) -> dict[str, Any] | None:
    """The alert's metric for its agent, minute by minute, from half an hour before it
    began to an hour after (or now), with the threshold beside it: the JSON that
    static/js/charts.js draws. None for a metric that is not a time series."""
    rule = alert.rule
    if rule.metric not in WINDOWED or alert.agent_id is None:
        return None
    now = now or timezone.now()
    start = (alert.started_at - CHART_BEFORE).replace(second=0, microsecond=0)
    end = min(alert.ended_at or now, alert.started_at + CHART_AFTER, now)
    rows = {
        row["minute"]: per_minute(rule.metric, dict(row))
        for row in MetricMinute.objects.filter(agent_id=alert.agent_id, minute__gte=start, minute__lte=end).values()
    }
    x: list[int] = []
    values: list[float | None] = []
    at = start
    while at <= end:
        x.append(int(at.timestamp()))
        value = rows.get(at)
        values.append(None if value is None else round(value, 2))
        at += timedelta(minutes=1)
    return {
        "title": f"{rule.get_metric_display()} of the agent, per minute", "unit": UNITS.get(rule.metric, ""),
        "x": x,
        "series": [{"label": "value", "values": values}, {"label": "threshold", "style": "reference", "values": [rule.threshold] * len(x)}],
        "empty": "No minutes reported around this alert.", "name": "alert", "step": 60, "span": 60 * len(x),
    }  # fmt: skip
