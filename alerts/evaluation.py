"""The evaluation of a tenant's alert rules (docs/alerts.md, "Evaluation").

Set-based: the metrics are read once per (tenant, metric, window) for every agent
(``alerts.sql.window_aggregates``; the heartbeat ages and quota use in one query each),
and every rule that uses them is decided from those figures, never a query per agent.

Safe with several evaluators at once: a tenant's rules are claimed with
``SELECT … FOR UPDATE SKIP LOCKED`` in the evaluation's transaction, so a second worker
skips the rules the first is deciding, and each transition is written once; the open
alerts are read under the same lock. A missed run loses nothing: the next decides from
the alert's state and how long its condition has held, not from when it last ran.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from alerts import lifecycle
from alerts.models import (
    OPEN_STATES,
    Alert,
    AlertRule,
    AlertState,
    AlertTransition,
    Metric,
    NoData,
    NotificationKind,
)
from alerts.notify import notify
from alerts.selectors import badge_changed
from alerts.sql import WINDOWED, Aggregates, update_values, windows_aggregates
from costs.selectors import quota_use_percent
from fleet.labels import parse_selector, with_selector
from fleet.models import Agent, DesiredState, ObservedState
from realtime import hub

log = logging.getLogger(__name__)
# An aggregation's place in ``Aggregates`` (a tuple): read by index in the tight loop of ``Figures.past``.
AGGREGATION_FIELDS = {name: Aggregates._fields.index(name) for name in ("avg", "max", "p95", "sum")}


class MetricsSource(Protocol):
    """Where the evaluator reads the fleet's figures: the console's metric store by default
    (``ConsoleMetrics``); another store plugs in here, the evaluator unchanged."""

    def windows_aggregates(
        self, metric: str, tenant_id: int, windows: tuple[int, ...], end: datetime
    ) -> dict[int, dict[UUID, Aggregates]]: ...

    def point_values(self, metric: str, tenant_id: int, now: datetime) -> dict[UUID, float]: ...


class ConsoleMetrics:
    def windows_aggregates(
        self, metric: str, tenant_id: int, windows: tuple[int, ...], end: datetime
    ) -> dict[int, dict[UUID, Aggregates]]:
        return windows_aggregates(metric, tenant_id, windows, end)

    def point_values(self, metric: str, tenant_id: int, now: datetime) -> dict[UUID, float]:
        if metric == Metric.HEARTBEAT_AGE:
            seen = Agent.objects.filter(tenant_id=tenant_id, last_heartbeat_at__isnull=False)
            return {pk: (now - at).total_seconds() for pk, at in seen.values_list("pk", "last_heartbeat_at") if at}
        if metric == Metric.QUOTA_USE:
            return quota_use_percent(tenant_id, now)
        if metric == Metric.STOP_UNCONFIRMED:
            # Flagged by fleet.liveness, and still not stopped: 1 until it stops or is restarted.
            flagged = Agent.objects.filter(
                tenant_id=tenant_id, desired_state=DesiredState.STOPPED, stop_unconfirmed_at__isnull=False
            ).exclude(observed_state=ObservedState.STOPPED)
            return dict.fromkeys(flagged.values_list("pk", flat=True), 1.0)
        raise ValueError(f"{metric} is a windowed metric")


@dataclass
class Evaluated:
    """What one run did."""

    rules: int = 0
    transitions: list[tuple[int, str, str]] = field(default_factory=list)  # (alert id, from, to)
    values: dict[int, float | None] = field(default_factory=dict)  # open alerts' new values, by id


def condition(rule: AlertRule) -> lifecycle.Condition:
    return lifecycle.Condition(
        rule.comparator, rule.threshold, rule.clear_threshold, timedelta(seconds=rule.for_seconds), rule.min_samples,
        rule.no_data,
    )  # fmt: skip


@dataclass(frozen=True)
class Figures:
    """One (metric, window, aggregation) of every agent with figures: the agents past a
    threshold in one pass (``past``), one agent's observation made only when asked (``get``)."""

    raw: dict[UUID, Any]  # Aggregates of a window, or a point's value
    aggregation: str  # "" for a point

    @classmethod
    def of(cls, raw: dict[UUID, Any], aggregation: str) -> Figures:
        return cls(raw, aggregation)

    def get(self, agent_id: UUID) -> lifecycle.Observed | None:
        found = self.raw.get(agent_id)
        if found is None:
            return None
        if self.aggregation:
            return lifecycle.Observed(found.of(self.aggregation), found.samples)
        return lifecycle.Observed(found, 1)

    def past(self, comparator: str, threshold: float) -> list[UUID]:
        """The agents whose value holds ``comparator`` against ``threshold``."""
        holds = lifecycle.COMPARE[comparator]
        if self.aggregation:
            field = AGGREGATION_FIELDS[self.aggregation]
            return [a for a, agg in self.raw.items() if (v := agg[field]) is not None and holds(v, threshold)]
        return [a for a, v in self.raw.items() if v is not None and math.isfinite(v) and holds(v, threshold)]


def observe(source: MetricsSource, rules: list[AlertRule], tenant_id: int, now: datetime) -> dict[int | None, Figures]:
    """Each rule's figures: one read per metric (all its windows at once), shared by every
    rule that uses it."""
    windows: dict[str, set[int]] = {}
    for rule in rules:
        if rule.metric in WINDOWED:
            windows.setdefault(rule.metric, set()).add(rule.window_seconds)
    reads: dict[tuple[str, int], dict[UUID, Any]] = {}
    for metric, spans in windows.items():
        for span, found in source.windows_aggregates(metric, tenant_id, tuple(sorted(spans)), now).items():
            reads[(metric, span)] = found
    shared: dict[tuple[str, int, str], Figures] = {}
    out: dict[int | None, Figures] = {}
    for rule in rules:
        windowed = rule.metric in WINDOWED
        read = (rule.metric, rule.window_seconds if windowed else 0)
        key = (*read, rule.aggregation if windowed else "")
        if key not in shared:
            if read not in reads:
                reads[read] = dict(source.point_values(rule.metric, tenant_id, now))
            shared[key] = Figures.of(reads[read], key[2])
        out[rule.pk] = shared[key]
    return out


def scope(rule: AlertRule, cache: dict[str, set[UUID]]) -> set[UUID]:
    """The agents a rule watches that are meant to run (a paused or stopped agent reports
    nothing on purpose): all, a label selector's, or one. An unconfirmed stop concerns the
    agents told to stop."""
    stops = rule.metric == Metric.STOP_UNCONFIRMED
    key = ("stopped:" if stops else "") + (f"agent:{rule.agent_id}" if rule.agent_id else f"selector:{rule.selector}")
    if key not in cache:
        agents = Agent.objects.filter(tenant_id=rule.tenant_id)
        agents = agents.filter(desired_state=DesiredState.STOPPED if stops else DesiredState.RUNNING)
        if rule.agent_id:
            agents = agents.filter(pk=rule.agent_id)
        elif rule.selector:
            agents = with_selector(agents, parse_selector(rule.selector))
        cache[key] = set(agents.values_list("pk", flat=True))
    return cache[key]


def _message(rule: AlertRule, value: float | None, no_data: bool) -> str:
    if no_data:
        return f"{rule.name}: no data for {rule.get_metric_display()} in {rule.window_seconds} s"
    shown = "—" if value is None else f"{value:,.2f}".rstrip("0").rstrip(".")
    return f"{rule.name}: {rule.get_metric_display()} {shown} ({rule.get_comparator_display()} {rule.threshold:g})"


def evaluate_tenant(tenant_id: int, *, now: datetime | None = None, source: MetricsSource | None = None) -> Evaluated:
    now = now or timezone.now()
    source = source or ConsoleMetrics()
    done = Evaluated()
    with transaction.atomic():
        rules = list(
            AlertRule.objects.select_for_update(skip_locked=True)
            .filter(tenant_id=tenant_id, enabled=True)
            .order_by("pk")
        )
        if not rules:
            return done
        done.rules = len(rules)
        seen = observe(source, rules, tenant_id, now)
        open_alerts: dict[tuple[int, str], Alert] = {
            (a.rule_id, a.fingerprint): a
            for a in Alert.objects.select_for_update().filter(rule__in=rules, state__in=OPEN_STATES)
        }
        by_rule: dict[int, list[Alert]] = {}
        for alert in open_alerts.values():
            by_rule.setdefault(alert.rule_id, []).append(alert)
        scopes: dict[str, set[UUID]] = {}
        for rule in rules:
            watched = scope(rule, scopes)
            figures = seen[rule.pk]
            # Only agents that may change: past the threshold, with an open alert, or (for a
            # no-data rule) without enough figures. Every other agent stays as it is.
            agents = set(figures.past(rule.comparator, rule.threshold)) & watched
            agents |= {a.agent_id for a in by_rule.get(rule.pk, ()) if a.agent_id}
            if rule.no_data == NoData.ALERT:
                enough = max(1, rule.min_samples)
                agents |= {a for a in watched if (o := figures.get(a)) is None or o.samples < enough}
            asked = condition(rule)
            for agent_id in sorted(agents):
                fingerprint = f"agent:{agent_id}"
                current = open_alerts.get((rule.pk, fingerprint))
                observed = figures.get(agent_id) or lifecycle.Observed(None, 0)
                applies = asked
                if agent_id not in watched:  # it left the scope (paused, relabelled): its alert ends
                    observed, applies = lifecycle.Observed(None, 0), replace(asked, no_data=NoData.OK)
                state = None if current is None else lifecycle.Open(current.state, current.started_at, current.no_data)
                decided = lifecycle.step(applies, state, observed, now)
                _apply(rule, agent_id, fingerprint, current, decided, observed, now, done)
        update_values(done.values, now)
        _notify(rules, done, now)
    return done


def _notify(rules: list[AlertRule], done: Evaluated, now: datetime) -> None:
    """One message per rule and kind for what this run fired and resolved (grouped)."""
    kinds = {AlertState.FIRING.value: NotificationKind.FIRING, AlertState.RESOLVED.value: NotificationKind.RESOLVED}
    told = {alert_id: kinds[after] for alert_id, _, after in done.transitions if after in kinds}
    if not told:
        return
    by_rule = {r.pk: r for r in rules}
    grouped: dict[tuple[int, str], list[Alert]] = {}
    for alert in Alert.objects.filter(pk__in=told).order_by("pk"):
        grouped.setdefault((alert.rule_id, told[alert.pk]), []).append(alert)
    for (rule_id, kind), alerts in grouped.items():
        notify(by_rule[rule_id], kind, alerts, now)


def _apply(
    rule: AlertRule, agent_id: UUID, fingerprint: str, current: Alert | None, decided: lifecycle.Step,
    observed: lifecycle.Observed, now: datetime, done: Evaluated,
) -> None:  # fmt: skip
    if decided.to is None:
        if current is not None and current.value != observed.value:
            done.values[current.pk] = observed.value  # written with the others in one statement
        return
    if decided.start:
        current = Alert.objects.create(
            tenant_id=rule.tenant_id, rule=rule, agent_id=agent_id, fingerprint=fingerprint, state=AlertState.PENDING,
            severity=rule.severity, no_data=decided.no_data, value=observed.value,
            message=_message(rule, observed.value, decided.no_data), started_at=now, evaluated_at=now,
        )  # fmt: skip
        _transition(current, "", AlertState.PENDING, observed.value, now, done)
        if decided.to == AlertState.PENDING:
            return
    assert current is not None  # noqa: S101 - a step that is not a start changes an open alert
    previous = current.state
    current.state, current.value, current.evaluated_at = decided.to, observed.value, now
    fields = ["state", "value", "evaluated_at"]
    if decided.to == AlertState.FIRING:
        current.fired_at, current.message = now, _message(rule, observed.value, current.no_data)
        fields += ["fired_at", "message"]
    else:
        current.ended_at = now
        fields.append("ended_at")
    current.save(update_fields=fields)
    _transition(current, previous, decided.to, observed.value, now, done)


def _transition(alert: Alert, before: str, after: str, value: float | None, at: datetime, done: Evaluated) -> None:
    AlertTransition.objects.create(alert=alert, at=at, from_state=before, to_state=after, value=value)
    badge_changed(alert.tenant_id)
    done.transitions.append((alert.pk, before, after))
    topic = {AlertState.FIRING: "alert.triggered", AlertState.RESOLVED: "alert.resolved"}.get(AlertState(after))
    if topic is not None:
        hub.publish(
            alert.tenant_id,
            topic,
            {
                "alert_id": alert.pk, "rule_id": alert.rule_id, "agent_id": alert.agent_id, "severity": alert.severity,
                "message": alert.message, "value": value, "timestamp": at,
            },
        )  # fmt: skip


def evaluate(*, now: datetime | None = None, source: MetricsSource | None = None) -> Evaluated:
    """Every tenant with enabled rules, each in its own transaction."""
    now = now or timezone.now()
    total = Evaluated()
    tenants = (
        AlertRule.objects.filter(enabled=True).values_list("tenant_id", flat=True).distinct().order_by("tenant_id")
    )
    for tenant_id in tenants:
        try:
            done = evaluate_tenant(tenant_id, now=now, source=source)
        except Exception:
            log.exception("alert evaluation of tenant %s failed; the next run tries again", tenant_id)
            continue
        total.rules += done.rules
        total.transitions += done.transitions
    return total


@dataclass(frozen=True)
class Preview:
    """What a rule would say now: the agents past its threshold (worst first), ignoring
    "for", and how many it watches and how many have too little data."""

    watched: int
    breaching: int
    worst: list[tuple[Agent, float]]
    no_data: int


def preview(
    tenant_id: int,
    rule: AlertRule,
    *,
    now: datetime | None = None,
    source: MetricsSource | None = None,
    limit: int = 10,
) -> Preview:
    """``rule`` (unsaved, as a form describes it) against the fleet's figures now."""
    now = now or timezone.now()
    figures = observe(source or ConsoleMetrics(), [rule], tenant_id, now)[rule.pk]
    watched = scope(rule, {})
    breaching: list[tuple[UUID, float]] = []
    missing = 0
    for agent_id in watched:
        observed = figures.get(agent_id)
        value = None if observed is None else observed.value
        if observed is None or value is None or observed.samples < max(1, rule.min_samples):
            missing += 1
        elif lifecycle.holds(rule.comparator, value, rule.threshold):
            breaching.append((agent_id, value))
    breaching.sort(key=lambda item: item[1], reverse=rule.comparator in ("gt", "gte"))
    names = Agent.objects.in_bulk([a for a, _ in breaching[:limit]])
    return Preview(len(watched), len(breaching), [(names[a], v) for a, v in breaching[:limit] if a in names], missing)
