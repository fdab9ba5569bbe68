from __future__ import annotations

from django.db import models

from tenancy.models import Tenant


class Severity(models.TextChoices):
    DEBUG = "debug", "Debug"
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"
    CRITICAL = "critical", "Critical"


class Event(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="events")
    agent = models.ForeignKey("fleet.Agent", null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    # Set by the sender so a retried batch is stored once.
    uid = models.UUIDField(null=True, blank=True)
    type = models.CharField(max_length=100)
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.INFO)
    message = models.CharField(max_length=1000, blank=True)
    data = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-occurred_at"]
        constraints = [models.UniqueConstraint(fields=["tenant", "uid"], name="event_tenant_uid_unique")]
        indexes = [
            # The event viewer: a tenant's latest events, optionally by type.
            models.Index(fields=["tenant", "-occurred_at"], name="event_tenant_time"),
            models.Index(fields=["tenant", "type", "-occurred_at"], name="event_tenant_type_time"),
            # Agent detail: an agent's latest events.
            models.Index(fields=["agent", "-occurred_at"], name="event_agent_time"),
        ]

    def __str__(self) -> str:
        return f"{self.type} at {self.occurred_at:%Y-%m-%d %H:%M:%S}"
