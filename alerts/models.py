"""Alert rules, the alerts they raise (one open instance per rule and agent), and each
alert's transitions (docs/alerts.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import models

from fleet.models import Agent
from tenancy.models import Tenant


class Metric(models.TextChoices):
    CPU = "cpu_percent", "CPU %"
    MEMORY = "memory_mb", "Memory (MB)"
    ERROR_RATE = "error_rate", "Error rate %"
    LATENCY = "latency_p95_ms", "Latency p95 (ms)"
    TOKENS = "tokens_per_min", "Tokens per minute"
    HEARTBEAT_AGE = "heartbeat_age_s", "Heartbeat age (s)"
    QUOTA_USE = "quota_use_pct", "Quota use %"
    STOP_UNCONFIRMED = "stop_unconfirmed", "Emergency stop not confirmed"
    BUDGET_USE = "budget_use_pct", "Budget use %"  # per budget, not per agent (costs.budgets)


class Aggregation(models.TextChoices):
    AVG = "avg", "Average"
    MAX = "max", "Maximum"
    P95 = "p95", "95th percentile"
    SUM = "sum", "Sum"


class Comparator(models.TextChoices):
    GT = "gt", ">"
    GTE = "gte", "≥"
    LT = "lt", "<"
    LTE = "lte", "≤"


class NoData(models.TextChoices):
    OK = "ok", "Treat as OK"
    KEEP = "keep", "Keep the last state"
    ALERT = "alert", "Raise a no-data alert"


class Severity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


class AlertRule(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="alert_rules")
    name = models.CharField(max_length=100)
    metric = models.CharField(max_length=32, choices=Metric.choices)
    aggregation = models.CharField(max_length=8, choices=Aggregation.choices, default=Aggregation.AVG)
    comparator = models.CharField(max_length=4, choices=Comparator.choices, default=Comparator.GT)
    threshold = models.FloatField()
    resolve_threshold = models.FloatField(
        null=True, blank=True, help_text="A firing alert resolves past this value (hysteresis); empty: the threshold."
    )
    window_seconds = models.PositiveIntegerField(default=300, help_text="The span the metric is aggregated over.")
    for_seconds = models.PositiveIntegerField(
        "for (seconds)", default=0, help_text="How long the condition must hold before the alert fires."
    )
    min_samples = models.PositiveIntegerField(
        default=1, help_text="Fewer reports than this in the window count as no data."
    )
    no_data = models.CharField(max_length=8, choices=NoData.choices, default=NoData.OK)
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    selector = models.CharField(
        "label selector", max_length=2000, blank=True, help_text="Which agents: empty for all, or e.g. team=search."
    )
    agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.CASCADE, related_name="+", help_text="One agent only."
    )
    enabled = models.BooleanField(default=True)
    targets: models.ManyToManyField[NotificationTarget, Any] = models.ManyToManyField(
        "NotificationTarget", blank=True, related_name="rules", help_text="Who hears when it fires and resolves."
    )
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="alertrule_tenant_name_unique")]

    def __str__(self) -> str:
        return self.name

    @property
    def clear_threshold(self) -> float:
        return self.threshold if self.resolve_threshold is None else self.resolve_threshold


class AlertState(models.TextChoices):
    PENDING = "pending", "Pending"
    FIRING = "firing", "Firing"
    RESOLVED = "resolved", "Resolved"
    INACTIVE = "inactive", "Cleared before firing"


OPEN_STATES = (AlertState.PENDING, AlertState.FIRING)


class Alert(models.Model):
    """One rule's alert for one agent, from pending to resolved. At most one is open per
    rule and fingerprint (a partial unique index): evaluation never duplicates one."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="alerts")
    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    fingerprint = models.CharField(max_length=80)
    state = models.CharField(max_length=16, choices=AlertState.choices)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    no_data = models.BooleanField(default=False, help_text="Raised because the agent reported too little.")
    value = models.FloatField(null=True, blank=True, help_text="The metric at the last evaluation.")
    message = models.CharField(max_length=300)
    started_at = models.DateTimeField(help_text="When the condition began to hold.")
    fired_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True, help_text="Resolved, or cleared before firing.")
    evaluated_at = models.DateTimeField()
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_until = models.DateTimeField(
        null=True, blank=True, help_text="The acknowledgement lapses then; a still firing alert triggers again."
    )
    ack_comment = models.CharField("comment", max_length=500, blank=True)
    snoozed_until = models.DateTimeField(null=True, blank=True)
    snoozed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    notified_at = models.DateTimeField(null=True, blank=True, help_text="The last message that named it.")

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "fingerprint"],
                condition=models.Q(state__in=["pending", "firing"]),
                name="alert_one_open_per_fingerprint",
            )
        ]
        indexes = [models.Index(fields=["tenant", "state"], name="alert_tenant_state")]

    def __str__(self) -> str:
        return f"{self.rule_id}/{self.fingerprint}: {self.state}"


class AlertTransition(models.Model):
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="transitions")
    at = models.DateTimeField()
    from_state = models.CharField(max_length=16, blank=True)  # "" for a new alert (inactive)
    to_state = models.CharField(max_length=16)
    value = models.FloatField(null=True, blank=True)
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.from_state or 'inactive'} → {self.to_state} at {self.at:%H:%M:%S}"


class TargetKind(models.TextChoices):
    WEBHOOK = "webhook", "Webhook"
    EMAIL = "email", "E-mail"


class NotificationTarget(models.Model):
    """Where a rule's alerts are sent: a webhook (JSON, signed with this target's secret)
    or e-mail addresses (docs/alerts.md, "Notifications")."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="notification_targets")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=TargetKind.choices)
    url = models.URLField("webhook URL", max_length=500, blank=True)
    secret = models.CharField(
        max_length=64, blank=True, help_text="Signs each webhook body (HMAC-SHA256); the receiver checks it."
    )
    emails = models.CharField("e-mail addresses", max_length=1000, blank=True, help_text="Comma-separated.")
    enabled = models.BooleanField(default=True)
    # On by default, as on-call expects: an approval nobody hears of runs out and is
    # decided by its timeout (alerts/approvals.py).
    approvals = models.BooleanField(
        "approval requests", default=True, help_text="Each new approval request of the tenant is sent here too."
    )
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="notificationtarget_tenant_name_unique")]

    def __str__(self) -> str:
        return self.name

    @property
    def addresses(self) -> list[str]:
        return [a.strip() for a in self.emails.split(",") if a.strip()]


class NotificationKind(models.TextChoices):
    FIRING = "firing", "Firing"
    RESOLVED = "resolved", "Resolved"
    REMINDER = "reminder", "Still firing"
    APPROVAL = "approval", "Approval needed"


class Notification(models.Model):
    """One message of one rule: every alert of the rule that fired (or resolved) in one
    evaluation, grouped, so a storm is one message naming every agent. Or (``approval``)
    one new approval request, told to the tenant's targets (alerts/approvals.py)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    rule = models.ForeignKey(AlertRule, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications")
    approval = models.ForeignKey(
        "approvals.ApprovalRequest", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    kind = models.CharField(max_length=16, choices=NotificationKind.choices)
    alerts = models.ManyToManyField(Alert, related_name="notifications")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(rule__isnull=False, approval__isnull=True)
                | models.Q(rule__isnull=True, approval__isnull=False, kind="approval"),
                name="notification_of_a_rule_or_an_approval",
            ),
            # A request is told once, however often its signal comes.
            models.UniqueConstraint(
                fields=["approval"], condition=models.Q(approval__isnull=False), name="notification_one_per_approval"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rule_id} {self.kind} at {self.created_at:%H:%M:%S}"


class DeliveryState(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Not sent"


class Delivery(models.Model):
    """A notification to one target, tried until sent or out of attempts."""

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="deliveries")
    target = models.ForeignKey(NotificationTarget, on_delete=models.CASCADE, related_name="deliveries")
    state = models.CharField(max_length=16, choices=DeliveryState.choices, default=DeliveryState.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    note = models.CharField(max_length=300, blank=True, help_text="Why it was not sent, or the last error.")

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="delivery_due")]

    def __str__(self) -> str:
        return f"{self.notification_id} → {self.target_id}: {self.state}"


class DeliveryAttempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="tries")
    at = models.DateTimeField()
    ok = models.BooleanField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    duration_ms = models.FloatField()

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.delivery_id} at {self.at:%H:%M:%S}: {'ok' if self.ok else self.error}"


class Silence(models.Model):
    """A maintenance window: alerts of the agents its label selector matches are sent to
    nobody and leave the header badge while it lasts. It may be made ahead of time."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="silences")
    matcher = models.CharField(
        "label selector", max_length=2000, help_text="The agents it silences, e.g. team=search,env=staging."
    )
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    comment = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-starts_at", "-id"]
        indexes = [models.Index(fields=["tenant", "ends_at"], name="silence_tenant_end")]

    def __str__(self) -> str:
        return f"{self.matcher} {self.starts_at:%Y-%m-%d %H:%M}–{self.ends_at:%Y-%m-%d %H:%M}"

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at
