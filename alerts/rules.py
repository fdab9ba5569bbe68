"""An alert rule as submitted (a form, the API, the admin), checked once: every field
from outside is parsed here, and a bad one is refused with its E107xx code and a message
that names it. Nothing is stored until the whole rule is good."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.dateparse import parse_datetime

from alerts.models import Aggregation, Comparator, Metric, NoData, Severity, TargetKind
from core.errors import ErrorCode, InterfaceError
from core.inputs import text_problem
from fleet.labels import BadSelector, parse_selector

MIN_WINDOW = 60  # seconds: the metric store's step
MAX_MIN_SAMPLES = 100_000
FIELDS = (
    "name", "metric", "aggregation", "comparator", "threshold", "resolve_threshold", "window_seconds",
    "for_seconds", "min_samples", "no_data", "severity", "scope", "selector", "agent", "enabled", "targets",
)  # fmt: skip
SCOPES = ("all", "selector", "agent")


@dataclass(frozen=True)
class RuleSpec:
    name: str
    metric: str
    aggregation: str
    comparator: str
    threshold: float
    resolve_threshold: float | None
    window_seconds: int
    for_seconds: int
    min_samples: int
    no_data: str
    severity: str
    selector: str
    agent_id: UUID | None
    enabled: bool
    targets: tuple[int, ...] = ()


def _refuse(code: ErrorCode, field: str, message: str) -> InterfaceError:
    error = InterfaceError(code, f"{field}: {message}")
    error.field = field  # type: ignore[attr-defined]
    return error


def _text(data: Mapping[str, Any], field: str, *, limit: int, required: bool = False) -> str:
    value = data.get(field, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise _refuse(ErrorCode.ALERT_RULE_INVALID, field, "must be text.")
    value = value.strip()
    problem = text_problem(value)
    if problem:
        raise _refuse(ErrorCode.ALERT_RULE_INVALID, field, f"the text {problem}.")
    if required and not value:
        raise _refuse(ErrorCode.ALERT_RULE_INVALID, field, "is required.")
    if len(value) > limit:
        raise _refuse(ErrorCode.ALERT_RULE_INVALID, field, f"at most {limit} characters.")
    return value


def _choice(data: Mapping[str, Any], field: str, choices: type[Any], default: str, code: ErrorCode) -> str:
    value = data.get(field) or default
    if value not in choices.values:
        allowed = ", ".join(choices.values)
        raise _refuse(code, field, f"unknown value {str(value)[:40]!r}; one of {allowed}.")
    return str(value)


def _number(value: Any, field: str, code: ErrorCode) -> float:
    if isinstance(value, bool):
        raise _refuse(code, field, "must be a number.")
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise _refuse(code, field, f"{str(value)[:40]!r} is not a number.") from None
    if not math.isfinite(number):
        raise _refuse(code, field, "must be a finite number (not NaN or infinite).")
    return number


def _seconds(data: Mapping[str, Any], field: str, default: int, *, minimum: int, code: ErrorCode) -> int:
    raw = data.get(field)
    if raw in (None, ""):
        return default
    value = _number(raw, field, code)
    if value != int(value) or value < minimum:
        raise _refuse(code, field, f"a whole number of seconds, at least {minimum}.")
    return int(value)


def rule_spec(data: Mapping[str, Any]) -> RuleSpec:
    """The rule ``data`` describes (strings from a form, or JSON values); InterfaceError
    E107xx naming the first bad field."""
    unknown = sorted(set(data) - set(FIELDS) - {"csrfmiddlewaretoken"})
    if unknown:
        raise _refuse(ErrorCode.ALERT_RULE_INVALID, unknown[0], "is not a field of an alert rule.")
    name = _text(data, "name", limit=100, required=True)
    metric = _choice(data, "metric", Metric, "", ErrorCode.ALERT_UNKNOWN_METRIC)
    aggregation = _choice(data, "aggregation", Aggregation, Aggregation.AVG, ErrorCode.ALERT_RULE_INVALID)
    comparator = _choice(data, "comparator", Comparator, Comparator.GT, ErrorCode.ALERT_RULE_INVALID)
    if data.get("threshold") in (None, ""):
        raise _refuse(ErrorCode.ALERT_BAD_THRESHOLD, "threshold", "is required.")
    threshold = _number(data["threshold"], "threshold", ErrorCode.ALERT_BAD_THRESHOLD)
    resolve = data.get("resolve_threshold")
    resolve_threshold = (
        None if resolve in (None, "") else _number(resolve, "resolve_threshold", ErrorCode.ALERT_BAD_THRESHOLD)
    )
    if resolve_threshold is not None:
        # Hysteresis clears on the safe side of the threshold, or at it.
        above = comparator in (Comparator.GT, Comparator.GTE)
        if (above and resolve_threshold > threshold) or (not above and resolve_threshold < threshold):
            side = "at or below" if above else "at or above"
            raise _refuse(ErrorCode.ALERT_BAD_THRESHOLD, "resolve_threshold", f"must be {side} the threshold.")
    retention = settings.L10.metrics_minute_retention_days * 86400
    window = _seconds(data, "window_seconds", 300, minimum=MIN_WINDOW, code=ErrorCode.ALERT_BAD_WINDOW)
    if window > retention:
        raise _refuse(
            ErrorCode.ALERT_BAD_WINDOW, "window_seconds", f"at most {retention} s, as long as minutes are kept."
        )
    for_seconds = _seconds(data, "for_seconds", 0, minimum=0, code=ErrorCode.ALERT_FOR_TOO_LONG)
    if for_seconds > retention:
        raise _refuse(
            ErrorCode.ALERT_FOR_TOO_LONG, "for_seconds", f"at most {retention} s, as long as minutes are kept."
        )
    min_samples = _seconds(data, "min_samples", 1, minimum=1, code=ErrorCode.ALERT_RULE_INVALID)
    if min_samples > MAX_MIN_SAMPLES:
        raise _refuse(ErrorCode.ALERT_RULE_INVALID, "min_samples", f"at most {MAX_MIN_SAMPLES}.")
    no_data = _choice(data, "no_data", NoData, NoData.OK, ErrorCode.ALERT_RULE_INVALID)
    severity = _choice(data, "severity", Severity, Severity.WARNING, ErrorCode.ALERT_RULE_INVALID)
    selector = _text(data, "selector", limit=2000)
    if selector:
        try:
            parse_selector(selector)
        except BadSelector as exc:
            raise _refuse(ErrorCode.ALERT_BAD_SCOPE, "selector", str(exc)) from None
    agent_ref = data.get("agent") or None
    agent_id = None
    if agent_ref is not None:
        try:
            agent_id = UUID(str(agent_ref))
        except ValueError:
            raise _refuse(ErrorCode.ALERT_BAD_SCOPE, "agent", "must be an agent's id.") from None
        if selector:
            raise _refuse(ErrorCode.ALERT_BAD_SCOPE, "selector", "give a selector or one agent, not both.")
    scope = data.get("scope") or ("agent" if agent_id else "selector" if selector else "all")
    if scope not in SCOPES:
        raise _refuse(ErrorCode.ALERT_BAD_SCOPE, "scope", f"one of {', '.join(SCOPES)}.")
    if scope == "selector" and not selector:
        raise _refuse(ErrorCode.ALERT_BAD_SCOPE, "selector", "is empty; give labels such as team=search.")
    if scope == "agent" and agent_id is None:
        raise _refuse(ErrorCode.ALERT_BAD_SCOPE, "agent", "choose the agent.")
    if scope == "all":
        selector, agent_id = "", None
    enabled = data.get("enabled", True)
    if isinstance(enabled, str):
        enabled = enabled.lower() in ("1", "true", "on", "yes")
    raw_targets = data.get("targets") or []
    if not isinstance(raw_targets, list | tuple) or not all(str(t).isdigit() for t in raw_targets):
        raise _refuse(ErrorCode.ALERT_BAD_TARGET, "targets", "a list of notification targets' ids.")
    return RuleSpec(
        name, metric, aggregation, comparator, threshold, resolve_threshold, window, for_seconds, min_samples,
        no_data, severity, selector, agent_id, bool(enabled), tuple(sorted({int(t) for t in raw_targets})),
    )  # fmt: skip


@dataclass(frozen=True)
class TargetSpec:
    name: str
    kind: str
    url: str
    emails: tuple[str, ...]


def target_spec(data: Mapping[str, Any]) -> TargetSpec:
    """A notification target as submitted; E10707 (or E10708 for its name) naming the field."""
    unknown = sorted(set(data) - {"name", "kind", "url", "emails", "csrfmiddlewaretoken"})
    if unknown:
        raise _refuse(ErrorCode.ALERT_BAD_TARGET, unknown[0], "is not a field of a notification target.")
    name = _text(data, "name", limit=100, required=True)
    kind = data.get("kind") or ""
    if kind not in TargetKind.values:
        raise _refuse(ErrorCode.ALERT_BAD_TARGET, "kind", "webhook or email.")
    url = _text(data, "url", limit=500)
    emails: tuple[str, ...] = ()
    if kind == TargetKind.WEBHOOK:
        parsed = urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise _refuse(
                ErrorCode.ALERT_BAD_TARGET, "url", "a webhook URL starts with http:// or https:// and names a host."
            )
    else:
        url = ""
        emails = tuple(a.strip() for a in _text(data, "emails", limit=1000, required=True).split(",") if a.strip())
        for address in emails:
            try:
                validate_email(address)
            except ValidationError:
                raise _refuse(
                    ErrorCode.ALERT_BAD_TARGET, "emails", f"{address[:100]!r} is not an e-mail address."
                ) from None
    return TargetSpec(name, str(kind), url, emails)


MAX_SILENCE = timedelta(days=30)


@dataclass(frozen=True)
class SilenceSpec:
    matcher: str
    starts_at: datetime
    ends_at: datetime
    comment: str


def _when(data: Mapping[str, Any], field: str) -> datetime | None:
    raw = data.get(field)
    if raw in (None, ""):
        return None
    value = raw if isinstance(raw, datetime) else parse_datetime(str(raw).strip().replace(" ", "T", 1))
    if value is None:
        raise _refuse(ErrorCode.ALERT_BAD_SILENCE, field, "a time such as 2026-12-01 14:00 (UTC).")
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def silence_spec(data: Mapping[str, Any], now: datetime) -> SilenceSpec:
    """A maintenance window as submitted: a label selector and a time range (from now, or
    ahead of time), at most ``MAX_SILENCE`` long; E10706 or E10712 naming the field."""
    unknown = sorted(set(data) - {"matcher", "starts_at", "ends_at", "hours", "comment", "csrfmiddlewaretoken"})
    if unknown:
        raise _refuse(ErrorCode.ALERT_BAD_SILENCE, unknown[0], "is not a field of a silence.")
    matcher = _text(data, "matcher", limit=2000)
    if not matcher:
        raise _refuse(ErrorCode.ALERT_BAD_SCOPE, "matcher", "is empty; give labels such as team=search.")
    try:
        parse_selector(matcher)
    except BadSelector as exc:
        raise _refuse(ErrorCode.ALERT_BAD_SCOPE, "matcher", str(exc)) from None
    starts = _when(data, "starts_at") or now
    ends = _when(data, "ends_at")
    if ends is None:
        hours = _number(data.get("hours") or "", "hours", ErrorCode.ALERT_BAD_SILENCE)
        ends = starts + timedelta(hours=hours)
    if ends <= starts or ends <= now:
        raise _refuse(ErrorCode.ALERT_BAD_SILENCE, "ends_at", "must be after the start, and after now.")
    if ends - starts > MAX_SILENCE:
        raise _refuse(ErrorCode.ALERT_BAD_SILENCE, "ends_at", "a silence lasts at most 30 days.")
    return SilenceSpec(matcher, starts, ends, _text(data, "comment", limit=500))
