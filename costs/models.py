from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models

from core import money
from tenancy.models import Tenant

PRICE = {"max_digits": 14, "decimal_places": 6, "validators": [MinValueValidator(Decimal(0))]}


class ModelPrice(models.Model):
    """What a model costs from a time on, in USD: per million input, output and cached input
    tokens, and per call. A price is never rewritten by a newer one: a change is a new row
    from its ``effective_from``, so past costs keep the price they were made with
    (docs/costs.md, "Prices")."""

    # None: the platform's list (``manage.py import_prices``), which a tenant uses for a
    # model it has no price of its own for.
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="model_prices",
        help_text="Empty for the platform's price list.",
    )  # fmt: skip
    provider = models.CharField(max_length=50, blank=True)
    model = models.CharField(max_length=100, help_text="The model's id, as agents report it.")
    # Other names of the same model: exact ids, or a prefix ending in "*" ("claude-sonnet-4-*")
    # for dated ids.
    aliases = models.JSONField(default=list, blank=True)
    input_per_mtok = models.DecimalField("input, per million tokens", **PRICE)  # type: ignore[arg-type]
    output_per_mtok = models.DecimalField("output, per million tokens", **PRICE)  # type: ignore[arg-type]
    # None: cached input costs what input does.
    cached_input_per_mtok = models.DecimalField(
        "cached input, per million tokens",
        null=True,
        blank=True,
        **PRICE,  # type: ignore[arg-type]
    )
    per_call = models.DecimalField("per call", default=Decimal(0), **PRICE)  # type: ignore[arg-type]
    currency = models.CharField(max_length=3, default="USD", choices=[(c, c) for c in money.CURRENCIES])
    effective_from = models.DateTimeField()
    source = models.CharField(max_length=100, blank=True, help_text="Where the price came from.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "model", "effective_from"], name="price_one_per_start", nulls_distinct=False
            ),
        ]
        indexes = [models.Index(fields=["tenant", "model", "-effective_from"], name="price_model_time")]

    def __str__(self) -> str:
        return f"{self.model} from {self.effective_from:%Y-%m-%d}"


class UsageRecord(models.Model):
    """Model usage an agent reported. Always stored: it is money already spent."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="usage_records")
    # RESTRICT: money spent is not deleted with an agent, only with its whole tenant.
    agent = models.ForeignKey("fleet.Agent", on_delete=models.RESTRICT, related_name="usage_records")
    # Set by the sender so a retried batch is stored once.
    uid = models.UUIDField(null=True, blank=True)
    model = models.CharField(max_length=100)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    api_calls = models.PositiveIntegerField(default=0)
    # Of the input tokens, those read from the provider's prompt cache (a cheaper price).
    cached_input_tokens = models.PositiveBigIntegerField(default=0)
    # Priced at ingest with the price in effect at ``occurred_at``; None while no price
    # is known for the model (unknown, never zero: docs/costs.md, "Unpriced usage").
    cost_usd = models.DecimalField(max_digits=money.MAX_DIGITS, decimal_places=money.PLACES, null=True, blank=True)
    price = models.ForeignKey(ModelPrice, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)
    # Reported while the agent was told to stop, or past a hard quota.
    flagged = models.BooleanField(default=False)
    flag_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-occurred_at"]
        constraints = [models.UniqueConstraint(fields=["tenant", "uid"], name="usage_tenant_uid_unique")]
        indexes = [
            # Cost pages: a tenant's usage over a time range, and by agent.
            models.Index(fields=["tenant", "occurred_at"], name="usage_tenant_time"),
            models.Index(fields=["agent", "occurred_at"], name="usage_agent_time"),
            # Usage of models without a price: the warning that says so, and the re-pricing
            # when a price is added.
            models.Index(
                fields=["tenant", "model", "occurred_at"],
                condition=models.Q(cost_usd__isnull=True),
                name="usage_unpriced",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model}: {self.input_tokens}+{self.output_tokens} tokens"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class CostHour(models.Model):
    """One agent's usage of one model in one hour, summed (docs/costs.md, "Rollups"): what
    summaries over days read instead of every record. Rebuilt whole from the records, so
    rebuilding an hour again gives the same row."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    agent = models.ForeignKey("fleet.Agent", on_delete=models.CASCADE, related_name="+")
    model = models.CharField(max_length=100)
    hour = models.DateTimeField()
    records = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cached_input_tokens = models.PositiveBigIntegerField(default=0)
    api_calls = models.PositiveBigIntegerField(default=0)
    # The known costs; the records without a price are counted in ``unpriced_records``.
    cost_usd = models.DecimalField(max_digits=money.MAX_DIGITS, decimal_places=money.PLACES, default=Decimal(0))
    unpriced_records = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "hour", "agent", "model"], name="cost_hour_unique"),
        ]
        indexes = [models.Index(fields=["agent", "hour"], name="cost_hour_agent")]

    def __str__(self) -> str:
        return f"{self.model} at {self.hour:%Y-%m-%d %H:00}"


class Sums(models.Model):
    """What a rollup row sums: records, tokens, calls, the known cost, and the records
    without a price (counted apart: their cost is unknown)."""

    records = models.PositiveBigIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cached_input_tokens = models.PositiveBigIntegerField(default=0)
    api_calls = models.PositiveBigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=money.MAX_DIGITS, decimal_places=money.PLACES, default=Decimal(0))
    unpriced_records = models.PositiveBigIntegerField(default=0)

    class Meta:
        abstract = True


class CostModelHour(Sums):
    """A tenant's usage of one model in one hour, summed from its ``CostHour`` rows: what
    the tenant's summaries by model read (a row holds thousands of records where an hour
    row holds one or two; docs/costs.md, "Rollups"). Rebuilt with its hour."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    model = models.CharField(max_length=100)
    hour = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "hour", "model"], name="cost_model_hour_unique")]

    def __str__(self) -> str:
        return f"{self.model} at {self.hour:%Y-%m-%d %H:00}"


class CostAgentDay(Sums):
    """One agent's usage of every model in one day (UTC), summed from its ``CostHour`` rows:
    what ranking a tenant's agents over days reads (docs/costs.md, "Rollups"). Rebuilt
    whenever one of its hours is."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    agent = models.ForeignKey("fleet.Agent", on_delete=models.CASCADE, related_name="+")
    day = models.DateTimeField()  # its midnight, UTC

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "day", "agent"], name="cost_agent_day_unique")]

    def __str__(self) -> str:
        return f"agent {self.agent_id} on {self.day:%Y-%m-%d}"


class CostDirtyHour(models.Model):
    """An hour of a tenant whose rollup is out of date (usage came late, or was priced
    after): rebuilt by the next rollup run, and read from the records until then."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField()
    marked_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "hour"], name="cost_dirty_unique")]

    def __str__(self) -> str:
        return f"tenant {self.tenant_id} at {self.hour:%Y-%m-%d %H:00}"


class Budget(models.Model):
    """What a tenant means to spend in a calendar month (UTC): on the whole tenant, one
    agent, or the agents a label selector picks (docs/costs.md, "Budgets")."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="budgets")
    name = models.CharField(max_length=100)
    agent = models.ForeignKey("fleet.Agent", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    selector = models.CharField("label selector", max_length=2000, blank=True)
    monthly_usd = models.DecimalField(
        "per month (USD)", max_digits=12, decimal_places=2, validators=[MinValueValidator(Decimal(0))]
    )
    auto_pause = models.BooleanField(default=False, help_text="Pause the agents it covers when it is used up.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="budget_tenant_name_unique")]

    def __str__(self) -> str:
        return self.name

    @property
    def covers(self) -> str:
        if self.agent_id is not None:
            return "one agent"
        return f"agents with {self.selector}" if self.selector else "the whole tenant"
