"""The evaluation of a tenant's alert rules (docs/alerts.md, "Evaluation").

Set-based: one statement reads every agent's figures for every (metric, window) the rules
use (``alerts.sql.windows``), one says which agents each scope holds (``alerts.sql.scopes``),
the heartbeat ages and quota use take one query each, and every rule is decided from those
figures, never a query per agent. A rule's candidates (the agents past its threshold) are
found in one pass over a column of figures.

Safe with several evaluators at once: a tenant's rules are claimed with
``SELECT … FOR UPDATE SKIP LOCKED`` in the evaluation's transaction, so a second worker
skips the rules the first is deciding, and each transition is written once; the open
alerts are read under the same lock. A missed run loses nothing: the next decides from
the alert's state and how long its condition has held, not from when it last ran.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from itertools import compress
from typing import Protocol
from uuid import UUID

from django.db import transaction
from django.utils import timezone

from alerts import lifecycle, sql
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
from alerts.sql import WINDOWED, Windows
from core import money
from costs import budgets
from costs.budgets import BudgetStatus
from costs.budgets import status as budget_status
from costs.models import Budget
from costs.selectors import quota_use_percent
from events.models import Severity as EventSeverity
from events.services import NewEvent, events_record
from fleet.models import Agent, DesiredState, ObservedState
from realtime import hub

log = logging.getLogger(__name__)


class MetricsSource(Protocol):
    """Where the evaluator reads the fleet's figures: the console's metric store by default
    (``ConsoleMetrics``); another store plugs in here, the evaluator unchanged."""

    def windows(self, tenant_id: int, wanted: Mapping[str, Sequence[int]], end: datetime) -> Windows:
        """For each windowed metric of ``wanted``, each of its windows (in seconds) ending at
        ``end``: every agent's figures, as columns (``alerts.sql.Windows``)."""
        ...

    def point_values(self, metric: str, tenant_id: int, now: datetime) -> Mapping[UUID, float | None]: ...


class ConsoleMetrics:
    def windows(self, tenant_id: int, wanted: Mapping[str, Sequence[int]], end: datetime) -> Windows:
        return sql.windows(tenant_id, wanted, end)

    def point_values(self, metric: str, tenant_id: int, now: datetime) -> Mapping[UUID, float | None]:
        if metric == Metric.HEARTBEAT_AGE:
            return sql.heartbeat_ages(tenant_id, now)
        if metric == Metric.QUOTA_USE:
            return quota_use_percent(tenant_id, now)
        if metric == Metric.BUDGET_USE:
            return {}  # a budget's figure, not an agent's: ``_budgets`` evaluates it
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
    events: list[NewEvent] = field(default_factory=list)  # alerts fired and resolved, stored at the end
    # Budgets that pause their agents, used up (True) or no longer (False): acted on after commit.
    budget_pauses: list[tuple[BudgetStatus, bool]] = field(default_factory=list)


def condition(rule: AlertRule) -> lifecycle.Condition:
    return lifecycle.Condition(
        rule.comparator, rule.threshold, rule.clear_threshold, timedelta(seconds=rule.for_seconds), rule.min_samples,
        rule.no_data,
    )  # fmt: skip


# ``float(threshold).__lt__(value)`` is ``value > threshold``: a comparator as the bound
# method of its threshold, mapped over a column in C. NaN (no figure) holds none of them.
BOUND: dict[str, Callable[[float], Callable[[float], bool]]] = {
    "gt": lambda t: t.__lt__,
    "gte": lambda t: t.__le__,
    "lt": lambda t: t.__gt__,
    "lte": lambda t: t.__ge__,
}


@dataclass(frozen=True)
class Figures:
    """One (metric, window, aggregation) of every agent with figures, as columns in one
    order: the agents past a threshold in one pass (``past``), one agent's observation
    when asked (``get``)."""

    agents: Sequence[UUID]
    values: Sequence[float]  # NaN: no figure
    samples: Sequence[int]
    index: Mapping[UUID, int]  # an agent's place in the columns
    found: dict[tuple[str, float], list[UUID]] = field(default_factory=dict, compare=False)

    @classmethod
    def of_points(cls, points: Mapping[UUID, float | None]) -> Figures:
        """A point's values (a heartbeat age): one sample each; None and ±inf as no figure."""
        agents = list(points)
        numbers = (math.nan if v is None else float(v) for v in points.values())
        values = [v if math.isfinite(v) else math.nan for v in numbers]
        return cls(agents, values, [1] * len(agents), {a: n for n, a in enumerate(agents)})

    def get(self, agent_id: UUID) -> lifecycle.Observed | None:
        n = self.index.get(agent_id)
        if n is None or not self.samples[n]:
            return None
        value = self.values[n]
        return lifecycle.Observed(None if math.isnan(value) else value, self.samples[n])

    def past(self, comparator: str, threshold: float) -> list[UUID]:
        """The agents whose value holds ``comparator`` against ``threshold`` (rules that
        share both share the answer)."""
        key = (comparator, threshold)
        if key not in self.found:
            self.found[key] = list(compress(self.agents, map(BOUND[comparator](float(threshold)), self.values)))
        return self.found[key]

    def lacking(self, agents: set[UUID], enough: int) -> set[UUID]:
        """Those of ``agents`` with fewer than ``enough`` samples or no figure: no data."""
        index, samples, values = self.index, self.samples, self.values
        return {a for a in agents if (n := index.get(a)) is None or samples[n] < enough or math.isnan(values[n])}


def observe(source: MetricsSource, rules: list[AlertRule], tenant_id: int, now: datetime) -> dict[int | None, Figures]:
    """Each rule's figures: the windowed metrics in one read, each point metric in one,
    shared by every rule that uses them."""
    wanted: dict[str, set[int]] = {}
    for rule in rules:
        if rule.metric in WINDOWED:
            wanted.setdefault(rule.metric, set()).add(rule.window_seconds)
    read = source.windows(tenant_id, {m: tuple(sorted(w)) for m, w in wanted.items()}, now) if wanted else None
    index = {} if read is None else {a: n for n, a in enumerate(read.agents)}
    shared: dict[tuple[str, int, str], Figures] = {}
    out: dict[int | None, Figures] = {}
    for rule in rules:
        windowed = rule.metric in WINDOWED
        key = (rule.metric, rule.window_seconds, rule.aggregation) if windowed else (rule.metric, 0, "")
        if key not in shared:
            if read is not None and windowed:
                found = read.figures[(rule.metric, rule.window_seconds)]
                shared[key] = Figures(read.agents, found.column(rule.aggregation), found.samples, index)
            else:
                shared[key] = Figures.of_points(source.point_values(rule.metric, tenant_id, now))
        out[rule.pk] = shared[key]
    return out


def scope(rule: AlertRule, scopes: sql.Scopes) -> set[UUID]:
    """The agents a rule watches that are meant to run (a paused or stopped agent reports
    nothing on purpose): all, a label selector's, or one. An unconfirmed stop concerns the
    agents told to stop."""
    held = (scopes.stopped if rule.metric == Metric.STOP_UNCONFIRMED else scopes.running)[
        "" if rule.agent_id else rule.selector
    ]
    return held & {rule.agent_id} if rule.agent_id else held


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
        held = sql.scopes(tenant_id, sorted({r.selector for r in rules if not r.agent_id}))
        _budgets([r for r in rules if r.metric == Metric.BUDGET_USE], open_alerts, tenant_id, now, done)
        for rule in (r for r in rules if r.metric != Metric.BUDGET_USE):
            watched = scope(rule, held)
            figures = seen[rule.pk]
            # Only agents that may change: past the threshold, with an open alert, or (for a
            # no-data rule) without enough figures. Every other agent stays as it is.
            agents = watched.intersection(figures.past(rule.comparator, rule.threshold))
            agents |= {a.agent_id for a in by_rule.get(rule.pk, ()) if a.agent_id}
            if rule.no_data == NoData.ALERT:
                agents |= figures.lacking(watched, max(1, rule.min_samples))
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
        sql.update_values(done.values, now)
        events_record(tenant_id=tenant_id, events=done.events)
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


def _budgets(
    rules: list[AlertRule], open_alerts: dict[tuple[int, str], Alert], tenant_id: int, now: datetime, done: Evaluated
) -> None:
    """The budget rules: each budget of the tenant is one alert per rule (fingerprint
    ``budget:<id>``), its figure the budget's use this month in %. An alert of a budget
    since removed ends. A budget used up that pauses its agents is noted in ``done``."""
    if not rules:
        return
    statuses = {
        f"budget:{s.budget.pk}": s for s in (budget_status(b, now) for b in Budget.objects.filter(tenant_id=tenant_id))
    }
    for rule in rules:
        asked = condition(rule)
        fingerprints = set(statuses) | {f for (r, f) in open_alerts if r == rule.pk}
        for fingerprint in sorted(fingerprints):
            found = statuses.get(fingerprint)
            current = open_alerts.get((rule.pk, fingerprint))
            observed = lifecycle.Observed(None, 0) if found is None else lifecycle.Observed(round(found.percent, 2), 1)
            state = None if current is None else lifecycle.Open(current.state, current.started_at, current.no_data)
            # A removed budget has no figure, and never will: its alert ends whatever the
            # rule does with no data (its agents were resumed by ``budgets.budget_remove``).
            applies = asked if found is not None else replace(asked, no_data=NoData.OK)
            decided = lifecycle.step(applies, state, observed, now)
            if found is None:
                _apply(rule, current.agent_id if current else None, fingerprint, current, decided, observed, now, done)
                continue
            said = (
                f"{rule.name}: {found.budget.name}, {money.usd(found.spent)} of {money.usd(found.budget.monthly_usd)}"
            )
            _apply(rule, found.budget.agent_id, fingerprint, current, decided, observed, now, done, message=said)
            if (
                found.budget.auto_pause
                and rule.threshold >= 100
                and decided.to in (AlertState.FIRING, AlertState.RESOLVED)
            ):
                done.budget_pauses.append((found, decided.to == AlertState.FIRING))


def _apply(
    rule: AlertRule, agent_id: UUID | None, fingerprint: str, current: Alert | None, decided: lifecycle.Step,
    observed: lifecycle.Observed, now: datetime, done: Evaluated, *, message: str | None = None,
) -> None:  # fmt: skip
    if decided.to is None:
        if current is not None and current.value != observed.value:
            done.values[current.pk] = observed.value  # written with the others in one statement
        return
    if decided.start:
        current = Alert.objects.create(
            tenant_id=rule.tenant_id, rule=rule, agent_id=agent_id, fingerprint=fingerprint, state=AlertState.PENDING,
            severity=rule.severity, no_data=decided.no_data, value=observed.value,
            message=message or _message(rule, observed.value, decided.no_data), started_at=now, evaluated_at=now,
        )  # fmt: skip
        _transition(current, "", AlertState.PENDING, observed.value, now, done)
        if decided.to == AlertState.PENDING:
            return
    assert current is not None  # noqa: S101 - a step that is not a start changes an open alert
    previous = current.state
    current.state, current.value, current.evaluated_at = decided.to, observed.value, now
    fields = ["state", "value", "evaluated_at"]
    if decided.to == AlertState.FIRING:
        current.fired_at, current.message = now, message or _message(rule, observed.value, current.no_data)
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
        fired = after == AlertState.FIRING
        done.events.append(
            NewEvent(
                type=f"alert.{after}", occurred_at=at, agent_id=alert.agent_id,
                severity=alert.severity if fired else EventSeverity.INFO,
                message=alert.message if fired else f"Resolved: {alert.message}",
                data={"alert_id": alert.pk, "rule_id": alert.rule_id, "value": value},
            )
        )  # fmt: skip
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
        for found, used_up in done.budget_pauses:  # committed: control takes its own locks
            try:
                (budgets.pause_covered if used_up else budgets.resume_covered)(found)
            except Exception:
                log.exception("budget %s: pausing or resuming its agents failed", found.budget.pk)
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
    watched = scope(rule, sql.scopes(tenant_id, [] if rule.agent_id else [rule.selector]))
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
