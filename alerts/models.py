"""Alert rules, the alerts they raise (one open instance per rule and agent), and each
alert's transitions (docs/alerts.md)."""

from __future__ import annotations

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
