"""Writes of alerting: rules, and what on-call people do to alerts (acknowledge, snooze).
Each change is audited in its own transaction and pushed to the tenant's live pages
(docs/alerts.md, "Acknowledge and snooze").

The role is read from the database on every call: acknowledging and snoozing need an
operator, changing rules an admin (E10004 otherwise); an alert or rule of another tenant
is not found (E10701).
"""

from __future__ import annotations

import secrets
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from django.db import IntegrityError, transaction
from django.utils import timezone

from alerts.models import (
    OPEN_STATES,
    Alert,
    AlertRule,
    AlertTransition,
    Metric,
    NoData,
    NotificationTarget,
    Severity,
    Silence,
)
from alerts.rules import RuleSpec, SilenceSpec, TargetSpec
from alerts.selectors import badge_changed
from audit.models import Outcome
from audit.services import Actor, Entry, audit_record
from core.errors import ErrorCode, InterfaceError
from events.services import emit
from fleet.models import Agent
from realtime import hub
from tenancy.models import Membership, Role, Tenant

MAX_SNOOZE = timedelta(days=7)
MAX_ACK = timedelta(days=7)


def require_role(actor: Actor, tenant_id: int, need: Role) -> None:
    """The actor's membership of the tenant allows ``need`` (read now, never trusted from a caller)."""
    if actor.user is None:
        return  # the system: periodic tasks
    membership = Membership.objects.filter(user=actor.user, tenant_id=tenant_id).first()
    if membership is None:
        raise InterfaceError(ErrorCode.ALERT_NOT_FOUND)
    if not membership.allows(need):
        raise InterfaceError(ErrorCode.PERMISSION_DENIED, f"Only an {need.label.lower()} or above may do this.")


# --- rules ---------------------------------------------------------------------------------


def _rule_fields(spec: RuleSpec) -> dict[str, Any]:
    fields = asdict(spec)
    fields.pop("targets")
    return fields


def _check_agent(tenant: Tenant, spec: RuleSpec) -> None:
    if spec.agent_id is not None and not Agent.objects.filter(tenant=tenant, pk=spec.agent_id).exists():
        raise InterfaceError(ErrorCode.ALERT_BAD_SCOPE, "agent: no such agent in this tenant.")
    found = NotificationTarget.objects.filter(tenant=tenant, pk__in=spec.targets).count()
    if found != len(spec.targets):
        raise InterfaceError(ErrorCode.ALERT_BAD_TARGET, "targets: a notification target of another tenant, or none.")


def rule_create(*, tenant: Tenant, spec: RuleSpec, actor: Actor) -> AlertRule:
    require_role(actor, tenant.pk, Role.ADMIN)
    _check_agent(tenant, spec)
    now = timezone.now()
    try:
        with transaction.atomic():
            rule = AlertRule.objects.create(tenant=tenant, created_at=now, updated_at=now, **_rule_fields(spec))
            rule.targets.set(spec.targets)
            audit_record(
                tenant_id=tenant.pk, actor=actor,
                entry=Entry("alert_rule.create", "alert_rule", str(rule.pk), Outcome.SUCCESS, delta=_delta({}, rule)),
            )  # fmt: skip
    except IntegrityError:
        raise InterfaceError(ErrorCode.ALERT_RULE_INVALID, f"name: a rule named {spec.name!r} exists.") from None
    return rule


def rule_update(*, tenant: Tenant, rule_id: int, spec: RuleSpec, actor: Actor) -> AlertRule:
    require_role(actor, tenant.pk, Role.ADMIN)
    _check_agent(tenant, spec)
    try:
        with transaction.atomic():
            rule = AlertRule.objects.select_for_update().filter(tenant=tenant, pk=rule_id).first()
            if rule is None:
                raise InterfaceError(ErrorCode.ALERT_NOT_FOUND, "No such alert rule.")
            before = _snapshot(rule)
            for name, value in _rule_fields(spec).items():
                setattr(rule, name, value)
            rule.updated_at = timezone.now()
            rule.save()
            rule.targets.set(spec.targets)
            audit_record(
                tenant_id=tenant.pk, actor=actor,
                entry=Entry("alert_rule.update", "alert_rule", str(rule.pk), Outcome.SUCCESS, delta=_delta(before, rule)),
            )  # fmt: skip
    except IntegrityError:
        raise InterfaceError(ErrorCode.ALERT_RULE_INVALID, f"name: a rule named {spec.name!r} exists.") from None
    return rule


def _snapshot(rule: AlertRule) -> dict[str, Any]:
    fields = {f: getattr(rule, f) for f in RuleSpec.__dataclass_fields__ if f != "targets" and hasattr(rule, f)}
    fields["targets"] = sorted(rule.targets.values_list("pk", flat=True)) if rule.pk else []
    return fields


def _delta(before: dict[str, Any], rule: AlertRule) -> dict[str, Any]:
    after = _snapshot(rule)
    return {
        k: {"from": _plain(before.get(k)), "to": _plain(v)}
        for k, v in after.items()
        if before.get(k) != v or not before
    }


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, UUID) else value


# --- notification targets ---------------------------------------------------------------------


def target_create(*, tenant: Tenant, spec: TargetSpec, actor: Actor) -> NotificationTarget:
    """A webhook (with a new signing secret) or e-mail target; admins only, audited."""
    require_role(actor, tenant.pk, Role.ADMIN)
    try:
        with transaction.atomic():
            target = NotificationTarget.objects.create(
                tenant=tenant, name=spec.name, kind=spec.kind, url=spec.url, emails=", ".join(spec.emails),
                secret=secrets.token_urlsafe(32) if spec.url else "", created_at=timezone.now(),
            )  # fmt: skip
            delta = {"kind": {"from": None, "to": spec.kind}, "url": {"from": None, "to": spec.url},
                     "emails": {"from": None, "to": target.emails}}  # fmt: skip
            audit_record(
                tenant_id=tenant.pk, actor=actor,
                entry=Entry("alert_target.create", "alert_target", str(target.pk), Outcome.SUCCESS, delta=delta),
            )  # fmt: skip
    except IntegrityError:
        raise InterfaceError(ErrorCode.ALERT_BAD_TARGET, f"name: a target named {spec.name!r} exists.") from None
    return target


def target_approvals_set(*, tenant: Tenant, target_id: int, on: bool, actor: Actor) -> NotificationTarget:
    """Whether the target is told of each new approval request (alerts/approvals.py);
    admins only, audited as ``alert_target.update``. Messages already made are sent."""
    require_role(actor, tenant.pk, Role.ADMIN)
    with transaction.atomic():
        target = NotificationTarget.objects.select_for_update().filter(tenant=tenant, pk=target_id).first()
        if target is None:
            raise InterfaceError(ErrorCode.ALERT_BAD_TARGET, "No such notification target.")
        if target.approvals != on:
            audit_record(
                tenant_id=tenant.pk, actor=actor,
                entry=Entry("alert_target.update", "alert_target", str(target.pk), Outcome.SUCCESS,
                            delta={"approvals": {"from": target.approvals, "to": on}}),
            )  # fmt: skip
            target.approvals = on
            target.save(update_fields=["approvals"])
    return target


def target_delete(*, tenant: Tenant, target_id: int, actor: Actor) -> None:
    require_role(actor, tenant.pk, Role.ADMIN)
    with transaction.atomic():
        target = NotificationTarget.objects.select_for_update().filter(tenant=tenant, pk=target_id).first()
        if target is None:
            raise InterfaceError(ErrorCode.ALERT_BAD_TARGET, "No such notification target.")
        audit_record(
            tenant_id=tenant.pk, actor=actor,
            entry=Entry("alert_target.delete", "alert_target", str(target.pk), Outcome.SUCCESS,
                        delta={"name": {"from": target.name, "to": None}}),
        )  # fmt: skip
        target.delete()


DEFAULT_RULES = [
    # name, metric, aggregation, comparator, threshold, resolve, window, for, min samples, no data, severity
    ("Agent unresponsive", Metric.HEARTBEAT_AGE, "max", "gt", 90.0, 60.0, 300, 0, 1, NoData.OK, Severity.CRITICAL),
    ("Error rate above 5 %", Metric.ERROR_RATE, "avg", "gt", 5.0, 4.0, 300, 300, 3, NoData.OK, Severity.WARNING),
    ("Quota use above 80 %", Metric.QUOTA_USE, "max", "gt", 80.0, 75.0, 300, 0, 1, NoData.OK, Severity.WARNING),
    (
        "Emergency stop not confirmed",
        Metric.STOP_UNCONFIRMED,
        "max",
        "gt",
        0.0,
        None,
        300,
        0,
        1,
        NoData.OK,
        Severity.CRITICAL,
    ),
    ("Budget 50 % used", Metric.BUDGET_USE, "max", "gte", 50.0, None, 300, 0, 1, NoData.OK, Severity.INFO),
    ("Budget 80 % used", Metric.BUDGET_USE, "max", "gte", 80.0, None, 300, 0, 1, NoData.OK, Severity.WARNING),
    ("Budget used up", Metric.BUDGET_USE, "max", "gte", 100.0, None, 300, 0, 1, NoData.OK, Severity.CRITICAL),
]


def default_rules(tenant: Tenant) -> list[AlertRule]:
    """A new tenant's rules: a budget 50 %, 80 % and wholly used, an agent gone silent,
    errors above 5 % for 5 minutes, a quota 80 % used, an emergency stop the agent has not
    confirmed. Idempotent: a rule of the same
    name is left as it is."""
    now = timezone.now()
    made = []
    for name, metric, agg, comp, threshold, resolve, window, for_s, samples, no_data, severity in DEFAULT_RULES:
        rule, _ = AlertRule.objects.get_or_create(
            tenant=tenant, name=name,
            defaults={
                "metric": metric, "aggregation": agg, "comparator": comp, "threshold": threshold,
                "resolve_threshold": resolve, "window_seconds": window, "for_seconds": for_s, "min_samples": samples,
                "no_data": no_data, "severity": severity, "created_at": now, "updated_at": now,
            },
        )  # fmt: skip
        made.append(rule)
    return made


# --- alerts -------------------------------------------------------------------------------


def _open_alert(tenant_id: int | None, alert_id: int | str, *, lock: bool = True) -> Alert:
    """The alert (of the tenant, when named), locked for the caller's transaction."""
    try:
        pk = int(alert_id)
    except (TypeError, ValueError):
        raise InterfaceError(ErrorCode.ALERT_NOT_FOUND, "An alert's id is a number.") from None
    query = Alert.objects.select_related("rule").filter(pk=pk)
    if lock:
        query = query.select_for_update()
    if tenant_id is not None:
        query = query.filter(tenant_id=tenant_id)
    found = query.first()
    if found is None:
        raise InterfaceError(ErrorCode.ALERT_NOT_FOUND)
    return found


def _audited(alert: Alert, actor: Actor, action: str, delta: dict[str, Any], note: str) -> None:
    badge_changed(alert.tenant_id)
    audit_id = audit_record(
        tenant_id=alert.tenant_id, actor=actor,
        entry=Entry(action, "alert", str(alert.pk), Outcome.SUCCESS, reason=note[:500], delta=delta),
    )  # fmt: skip
    said = f"{action.removeprefix('alert.')} by {actor.label}" + (f": {note}" if note else "")
    AlertTransition.objects.create(
        alert=alert, at=timezone.now(), from_state=alert.state, to_state=alert.state, value=alert.value, note=said
    )
    emit(
        alert.tenant_id, action, agent_id=alert.agent_id, message=f"{said} ({alert.message})"[:1000],
        data={"alert_id": alert.pk, "by": actor.label, "change": delta, "audit_id": audit_id},
    )  # fmt: skip
    hub.publish(
        alert.tenant_id,
        "alert.acknowledged" if action == "alert.acknowledge" else "alert.updated",
        {"alert_id": alert.pk, "action": action, "by": actor.label, "agent_id": alert.agent_id,
         "acknowledged": alert.acknowledged_at is not None, "snoozed_until": alert.snoozed_until},
    )  # fmt: skip


def _denied(tenant_id: int, actor: Actor, action: str, alert_id: Any, exc: InterfaceError) -> None:
    audit_record(
        tenant_id=tenant_id, actor=actor,
        entry=Entry(action, "alert", str(alert_id)[:64], Outcome.DENIED, reason=exc.message[:500], error_code=str(exc.code)),
    )  # fmt: skip


def alert_acknowledge(
    *, alert_id: int | str, actor: Actor, tenant_id: int | None = None, comment: str = "",
    until: datetime | None = None, now: datetime | None = None,
) -> Alert:  # fmt: skip
    """Acknowledge an open alert: its notifications stop. ``until``: the acknowledgement
    lapses then, and an alert still firing triggers again."""
    now = now or timezone.now()
    alert = _open_alert(tenant_id, alert_id, lock=False)  # its tenant, for the audit of a refusal
    try:
        with transaction.atomic():
            alert = _open_alert(alert.tenant_id, alert.pk)
            require_role(actor, alert.tenant_id, Role.OPERATOR)
            if alert.state not in OPEN_STATES:
                raise InterfaceError(ErrorCode.ALERT_NOT_OPEN)
            if until is not None and not now < until <= now + MAX_ACK:
                raise InterfaceError(ErrorCode.ALERT_BAD_SNOOZE, "An acknowledgement lasts until a time within 7 days.")
            alert.acknowledged_by, alert.acknowledged_at, alert.acknowledged_until = actor.user, now, until
            alert.ack_comment = comment[:500]
            alert.save(update_fields=["acknowledged_by", "acknowledged_at", "acknowledged_until", "ack_comment"])
            delta: dict[str, Any] = {"acknowledged": {"from": False, "to": True}}
            if until is not None:
                delta["acknowledged_until"] = {"from": None, "to": until.isoformat()}
            _audited(alert, actor, "alert.acknowledge", delta, comment)
            return alert
    except InterfaceError as exc:
        if exc.code != ErrorCode.ALERT_NOT_FOUND:
            _denied(alert.tenant_id, actor, "alert.acknowledge", alert_id, exc)
        raise


def alert_unacknowledge(*, alert_id: int | str, actor: Actor, tenant_id: int | None = None) -> Alert:
    with transaction.atomic():
        alert = _open_alert(tenant_id, alert_id)
        require_role(actor, alert.tenant_id, Role.OPERATOR)
        if alert.acknowledged_at is None:
            return alert
        alert.acknowledged_by = alert.acknowledged_at = alert.acknowledged_until = None
        alert.ack_comment = ""
        alert.save(update_fields=["acknowledged_by", "acknowledged_at", "acknowledged_until", "ack_comment"])
        _audited(alert, actor, "alert.unacknowledge", {"acknowledged": {"from": True, "to": False}}, "")
        return alert


def alert_snooze(
    *, alert_id: int | str, actor: Actor, tenant_id: int | None = None, duration: timedelta | None = None,
    until: datetime | None = None, now: datetime | None = None,
) -> Alert:  # fmt: skip
    """Snooze an open alert for ``duration`` or until ``until`` (at most 7 days): it stays
    visible, its notifications stop, and it wakes by itself."""
    now = now or timezone.now()
    alert = _open_alert(tenant_id, alert_id, lock=False)  # its tenant, for the audit of a refusal
    try:
        with transaction.atomic():
            alert = _open_alert(alert.tenant_id, alert.pk)
            require_role(actor, alert.tenant_id, Role.OPERATOR)
            if alert.state not in OPEN_STATES:
                raise InterfaceError(ErrorCode.ALERT_NOT_OPEN)
            wake = until if until is not None else (now + duration if duration is not None else None)
            if wake is None or not now < wake <= now + MAX_SNOOZE:
                raise InterfaceError(ErrorCode.ALERT_BAD_SNOOZE)
            before = alert.snoozed_until
            alert.snoozed_until, alert.snoozed_by = wake, actor.user
            alert.save(update_fields=["snoozed_until", "snoozed_by"])
            delta = {"snoozed_until": {"from": before.isoformat() if before else None, "to": wake.isoformat()}}
            _audited(alert, actor, "alert.snooze", delta, "")
            return alert
    except InterfaceError as exc:
        if exc.code != ErrorCode.ALERT_NOT_FOUND:
            _denied(alert.tenant_id, actor, "alert.snooze", alert_id, exc)
        raise


# --- silences -----------------------------------------------------------------------------------


def silence_create(*, tenant: Tenant, spec: SilenceSpec, actor: Actor) -> Silence:
    """A maintenance window (operators and admins); audited, and the pages' badges recounted."""
    require_role(actor, tenant.pk, Role.OPERATOR)
    with transaction.atomic():
        silence = Silence.objects.create(
            tenant=tenant, matcher=spec.matcher, starts_at=spec.starts_at, ends_at=spec.ends_at, comment=spec.comment,
            created_by=actor.user, created_at=timezone.now(),
        )  # fmt: skip
        delta = {"matcher": {"from": None, "to": spec.matcher}, "starts_at": {"from": None, "to": spec.starts_at.isoformat()},
                 "ends_at": {"from": None, "to": spec.ends_at.isoformat()}}  # fmt: skip
        audit_record(
            tenant_id=tenant.pk, actor=actor,
            entry=Entry("alert_silence.create", "alert_silence", str(silence.pk), Outcome.SUCCESS, reason=spec.comment,
                        delta=delta),
        )  # fmt: skip
        _silences_changed(tenant.pk, silence, "alert_silence.create", actor)
    return silence


def silence_expire(*, tenant: Tenant, silence_id: int, actor: Actor, now: datetime | None = None) -> Silence:
    """End a silence now (one not yet begun ends before it begins)."""
    now = now or timezone.now()
    require_role(actor, tenant.pk, Role.OPERATOR)
    with transaction.atomic():
        silence = Silence.objects.select_for_update().filter(tenant=tenant, pk=silence_id).first()
        if silence is None or silence.ends_at <= now:
            raise InterfaceError(ErrorCode.ALERT_BAD_SILENCE, "No such silence, or it has ended already.")
        before = silence.ends_at
        silence.ends_at = max(now, silence.starts_at)
        silence.save(update_fields=["ends_at"])
        audit_record(
            tenant_id=tenant.pk, actor=actor,
            entry=Entry("alert_silence.expire", "alert_silence", str(silence.pk), Outcome.SUCCESS,
                        delta={"ends_at": {"from": before.isoformat(), "to": silence.ends_at.isoformat()}}),
        )  # fmt: skip
        _silences_changed(tenant.pk, silence, "alert_silence.expire", actor)
    return silence


def _silences_changed(tenant_id: int, silence: Silence, action: str, actor: Actor) -> None:
    badge_changed(tenant_id)
    hub.publish(tenant_id, "alert.updated", {"silence_id": silence.pk, "action": action, "by": actor.label})
