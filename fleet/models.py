from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models.expressions import CombinedExpression
from django.db.models.functions import Least, NullIf
from django.utils import timezone

from fleet import states
from tenancy.models import Tenant


class DesiredState(models.TextChoices):
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    STOPPED = "stopped", "Stopped"


class ObservedState(models.TextChoices):
    STARTING = "starting", "Starting"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    STOPPED = "stopped", "Stopped"
    ERROR = "error", "Error"
    UNRESPONSIVE = "unresponsive", "Unresponsive"


DESIRED_LABELS: dict[str, str] = dict(DesiredState.choices)
OBSERVED_LABELS: dict[str, str] = dict(ObservedState.choices)


class PauseMode(models.TextChoices):
    NOW = "now", "now (tasks stop at their next checkpoint)"
    AFTER_TASK = "after_task", "after the current task"


class QuotaType(models.TextChoices):
    API_CALLS = "api_calls", "API calls"
    TOKENS = "tokens", "Tokens"
    COST_USD = "cost_usd", "Cost (US cents)"  # a limit in cents; what was spent rounded up (core/money.py)


class QuotaPeriod(models.TextChoices):
    HOUR = "hour", "per hour"
    DAY = "day", "per day"
    MONTH = "month", "per month"


def error_rate() -> CombinedExpression:
    """An agent's failed requests per request, 0..1, NULL without requests
    (``core.stats.error_rate``), as the overview ranks agents by it. The top-ten index on it
    (``agent_top_error_rate``) serves only this same expression."""
    failed = Least(models.F("errors_per_min"), models.F("requests_per_min"), output_field=models.FloatField())
    return failed / NullIf(models.F("requests_per_min"), 0.0, output_field=models.FloatField())


# A change the agent has not confirmed within this many heartbeat intervals has timed out.
CONFIRM_WITHIN_INTERVALS = 3


@dataclass(frozen=True)
class Receipt:
    """The latest change of desired state, step by step: requested → delivered to the
    agent → confirmed by it (or timed out). The page never claims more than this."""

    state: str  # the desired state asked for
    requested_at: datetime
    by: str
    delivered_at: datetime | None
    confirmed_at: datetime | None
    timed_out: bool


class Agent(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="agents")
    external_id = models.CharField("external id", max_length=200, help_text="The name the SDK registers with.")
    name = models.CharField(max_length=200)
    labels = models.JSONField(
        default=dict, blank=True, help_text='As the SDK registered them, e.g. {"team": "search"}.'
    )

    desired_state = models.CharField(
        max_length=16,
        choices=DesiredState.choices,
        default=DesiredState.RUNNING,
        help_text="What the console tells the agent; changed on the agent's page (audited, sent to the agent).",
    )
    desired_changed_at = models.DateTimeField("desired state changed", null=True, blank=True)
    desired_changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The fencing token: bumped with every change of desired state or quotas.
    version = models.PositiveBigIntegerField(
        "control version", default=1, help_text="Goes up with every change of desired state or quotas."
    )
    # While paused: why, until when (then it resumes by itself), and whether tasks in hand
    # stop at their next checkpoint ("now") or finish first ("after_task").
    pause_reason = models.CharField(max_length=500, blank=True)
    pause_until = models.DateTimeField(null=True, blank=True)
    pause_mode = models.CharField(max_length=16, choices=PauseMode.choices, default=PauseMode.AFTER_TASK)
    # An emergency stop the agent did not confirm in time: when that was noticed.
    stop_unconfirmed_at = models.DateTimeField(null=True, blank=True)
    # The latest version the agent was sent (over its socket or in a heartbeat answer), and when.
    delivered_version = models.PositiveBigIntegerField(
        "version delivered", default=0, help_text="The latest control version the agent was sent."
    )
    delivered_at = models.DateTimeField("delivered", null=True, blank=True)
    quotas = models.JSONField(
        default=dict, blank=True, help_text='Limits by type and period, e.g. {"tokens": {"day": 100000}}.'
    )

    observed_state = models.CharField(
        max_length=16,
        choices=ObservedState.choices,
        default=ObservedState.STARTING,
        help_text="What the agent last reported (or unresponsive, when it went silent).",
    )
    observed_changed_at = models.DateTimeField("observed state changed", null=True, blank=True)
    last_heartbeat_at = models.DateTimeField("last heartbeat", null=True, blank=True)

    # The latest reported metrics, so live pages never scan the time series.
    cpu_percent = models.FloatField("CPU %", null=True, blank=True)
    memory_mb = models.FloatField("memory (MB)", null=True, blank=True)
    latency_p95_ms = models.FloatField("latency p95 (ms)", null=True, blank=True)
    tokens_per_min = models.FloatField("tokens / min", null=True, blank=True)
    requests_per_min = models.FloatField("requests / min", null=True, blank=True)
    errors_per_min = models.FloatField("errors / min", null=True, blank=True)
    metrics_at = models.DateTimeField("figures reported", null=True, blank=True)

    registered_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "external_id"], name="agent_tenant_external_id_unique"),
        ]
        indexes = [
            # resume_expired_pauses: pauses whose time is up.
            models.Index(
                fields=["pause_until"], name="agent_pause_until", condition=models.Q(pause_until__isnull=False)
            ),
            # The agent list: a tenant's agents by name, and counts by state.
            models.Index(fields=["tenant", "name"], name="agent_tenant_name"),
            models.Index(fields=["tenant", "observed_state"], name="agent_tenant_observed"),
            # mark_unresponsive: silent agents across all tenants.
            models.Index(fields=["last_heartbeat_at"], name="agent_last_heartbeat"),
            # The overview's top tens (fleet.selectors.top_agents): each walks its index from the
            # top and skips agents whose metrics are no longer fresh, instead of sorting every
            # live agent. "Fresh" moves with the clock, so it cannot be the index's condition;
            # agents that never reported (no metrics_at) are left out.
            models.Index(
                "tenant",
                models.F("cpu_percent").desc(),
                name="agent_top_cpu",
                condition=models.Q(cpu_percent__isnull=False, metrics_at__isnull=False),
            ),
            models.Index(
                "tenant",
                models.F("tokens_per_min").desc(),
                name="agent_top_tokens",
                condition=models.Q(tokens_per_min__gt=0, metrics_at__isnull=False),
            ),
            models.Index(
                "tenant",
                error_rate().desc(),
                name="agent_top_error_rate",
                condition=models.Q(errors_per_min__gt=0, requests_per_min__gt=0, metrics_at__isnull=False),
            ),
            # Label selectors on PostgreSQL use a GIN index (jsonb_path_ops) on labels, made by
            # migration 0008 for PostgreSQL only (SQLite has no such index): fleet/labels.py.
        ]

    def __str__(self) -> str:
        return self.name

    # get_<field>_display() builds a dict of the field's choices on every call; a list page
    # asks for two per row.
    @property
    def desired_label(self) -> str:
        return DESIRED_LABELS.get(self.desired_state, self.desired_state)

    @property
    def observed_label(self) -> str:
        return OBSERVED_LABELS.get(self.observed_state, self.observed_state)

    @property
    def pending_text(self) -> str | None:
        """What a change under way is called ("pausing…"), or None (``fleet.states``)."""
        return states.pending_text(self.desired_state, self.observed_state)

    @property
    def metrics_stale(self) -> bool:
        """Its figures are the last it reported, not current work (``fleet.states``)."""
        return states.metrics_stale(self.observed_state, self.metrics_at, timezone.now())

    @property
    def receipt(self) -> Receipt | None:
        if self.desired_changed_at is None:
            return None
        asked = self.desired_changed_at
        delivered = self.delivered_at if self.delivered_version >= self.version and self.delivered_at else None
        confirmed = None
        if self.observed_state == self.desired_state:
            # Confirmed by a report made after the request: a state change, or a heartbeat.
            if self.observed_changed_at and self.observed_changed_at >= asked:
                confirmed = self.observed_changed_at
            elif self.last_heartbeat_at and self.last_heartbeat_at >= asked:
                confirmed = self.last_heartbeat_at
        deadline = timedelta(seconds=settings.L10.agent_heartbeat_interval * CONFIRM_WITHIN_INTERVALS)
        return Receipt(
            state=self.get_desired_state_display(),
            requested_at=asked,
            by=self.desired_changed_by.get_username() if self.desired_changed_by is not None else "system",
            delivered_at=delivered,
            confirmed_at=confirmed,
            timed_out=confirmed is None and timezone.now() - asked > deadline,
        )


# The aggregate columns of minute rows and rollups: sums add up, maxima keep the larger.
SUM_FIELDS = ("samples", "cpu_sum", "memory_sum", "tokens", "requests", "errors")
MAX_FIELDS = ("cpu_max", "memory_max", "latency_p95_ms")


class MetricAggregate(models.Model):
    """The aggregate columns shared by per-minute rows and the rollups built from them."""

    samples = models.PositiveIntegerField(default=0)
    cpu_sum = models.FloatField(default=0)
    cpu_max = models.FloatField(default=0)
    memory_sum = models.FloatField(default=0)
    memory_max = models.FloatField(default=0)
    tokens = models.BigIntegerField(default=0)
    requests = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    latency_p95_ms = models.FloatField(default=0, help_text="Highest p95 reported within the bucket.")

    class Meta:
        abstract = True

    @property
    def cpu_avg(self) -> float:
        return self.cpu_sum / self.samples if self.samples else 0.0

    @property
    def memory_avg(self) -> float:
        return self.memory_sum / self.samples if self.samples else 0.0


class MetricMinute(MetricAggregate):
    """One row per agent per minute; samples reported within the minute are merged in."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="metric_minutes")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    minute = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["agent", "minute"], name="metricminute_agent_minute_unique")]
        indexes = [
            # Fleet charts: a tenant's rows over a time range.
            models.Index(fields=["tenant", "minute"], name="metricminute_tenant_minute"),
        ]

    def __str__(self) -> str:
        return f"{self.agent_id} at {self.minute:%Y-%m-%d %H:%M}"


class MetricHour(MetricAggregate):
    """An agent's hour, rolled up from its minute rows (``fleet.rollups``), for long ranges."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="metric_hours")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["agent", "hour"], name="metrichour_agent_hour_unique")]
        indexes = [models.Index(fields=["tenant", "hour"], name="metrichour_tenant_hour")]

    def __str__(self) -> str:
        return f"{self.agent_id} at {self.hour:%Y-%m-%d %H}h"


class TenantMetricBucket(MetricAggregate):
    """A tenant's whole fleet in one 5-minute bucket, for fleet charts over hours and days.

    ``agents`` is how many agents reported in the bucket; ``cpu_p95``/``memory_p95`` are
    across the agents' per-bucket averages.
    """

    BUCKET_MINUTES = 5

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    bucket = models.DateTimeField()
    agents = models.PositiveIntegerField(default=0)
    cpu_p95 = models.FloatField(default=0)
    memory_p95 = models.FloatField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "bucket"], name="tenantmetricbucket_tenant_bucket_unique")
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} at {self.bucket:%Y-%m-%d %H:%M}"


class TenantMetricMinute(models.Model):
    """A tenant's whole fleet in one minute, as ``fleet.sql.fleet_minutes`` computes it from
    the minute rows: folded by the rollups (``fleet.rollups``), so a fleet chart over an
    hour reads 60 rows whatever the fleet's size. ``agents`` reported in the minute;
    ``cpu_p95``/``memory_p95`` are across their averages (``core.stats``'s method)."""

    # Its figures, in the order of fleet.sql.MinuteFigures after the minute.
    FIGURES = (
        "agents", "samples", "cpu_sum", "cpu_p95", "memory_sum", "memory_p95", "tokens", "requests", "errors",
        "latency_p95_ms",
    )  # fmt: skip

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    minute = models.DateTimeField()
    agents = models.PositiveIntegerField(default=0)
    samples = models.BigIntegerField(default=0)
    cpu_sum = models.FloatField(default=0)
    cpu_p95 = models.FloatField(default=0)
    memory_sum = models.FloatField(default=0)
    memory_p95 = models.FloatField(default=0)
    tokens = models.BigIntegerField(default=0)
    requests = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    latency_p95_ms = models.FloatField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "minute"], name="tenantmetricminute_tenant_minute_unique")
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id} at {self.minute:%Y-%m-%d %H:%M}"


# The fleet minutes folded so far: every minute from FLEET_MINUTES_SINCE (the first fold)
# up to FLEET_MINUTES_MARK is in TenantMetricMinute (RollupMark rows of these names).
FLEET_MINUTES_MARK = "fleet-minutes"
FLEET_MINUTES_SINCE = "fleet-minutes-since"


class RollupMark(models.Model):
    """How far a rollup has got: every bucket before ``done_until`` is rolled up."""

    name = models.CharField(max_length=50, unique=True)
    done_until = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} until {self.done_until:%Y-%m-%d %H:%M}"


class RollupDirtyHour(models.Model):
    """An hour of a tenant whose rollups must be rebuilt: samples arrived for it after the
    routine run had passed it (an agent catching up after an outage). ``fleet.rollups.rollup_backlog``
    works through them oldest first, a bounded number per tenant and per run, and deletes each
    mark once its hour is rebuilt, so the next run continues where the last one stopped."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField()
    # The latest mark: one made while the hour is being rebuilt outlives that rebuild.
    marked_at = models.DateTimeField()

    class Meta:
        # Its index serves the backlog's read: a tenant's oldest hours.
        constraints = [models.UniqueConstraint(fields=["tenant", "hour"], name="rollupdirtyhour_tenant_hour_unique")]

    def __str__(self) -> str:
        return f"{self.tenant_id} at {self.hour:%Y-%m-%d %H}h"


class MetricSampleId(models.Model):
    """The ledger of metric sample ids a tenant has sent: claimed in the transaction that
    merges the samples into minute rows, so a retried batch is stored once. Purged after
    the minute rows' retention (``L10_METRICS_MINUTE_RETENTION_DAYS``)."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    sample_id = models.UUIDField()
    seen_at = models.DateTimeField()

    class Meta:
        # Its index serves the claim (fleet.sql.claim_samples): INSERT … ON CONFLICT DO NOTHING.
        constraints = [
            models.UniqueConstraint(fields=["tenant", "sample_id"], name="metricsampleid_tenant_sample_unique")
        ]
        # The purge: ids seen before the cutoff.
        indexes = [models.Index(fields=["seen_at"], name="metricsampleid_seen_at")]

    def __str__(self) -> str:
        return f"{self.tenant_id}: {self.sample_id}"
