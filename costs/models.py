from __future__ import annotations

from django.db import models

from tenancy.models import Tenant


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
        ]

    def __str__(self) -> str:
        return f"{self.model}: {self.input_tokens}+{self.output_tokens} tokens"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens
