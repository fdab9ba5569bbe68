"""The audit trail: who did what, when, from where, and how it ended. Append-only: on
PostgreSQL a trigger refuses every UPDATE and DELETE of a row."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from tenancy.models import Tenant


class Outcome(models.TextChoices):
    SUCCESS = "success", "Succeeded"
    NOOP = "noop", "Nothing to do"
    DENIED = "denied", "Refused"
    FAILED = "failed", "Failed"


class AuditEntry(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="audit_entries")
    occurred_at = models.DateTimeField()
    # The actor: a user, or "system" (an expiry, a periodic task); the label survives the user.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        verbose_name="account", help_text="The account that acted; empty for the system, or once the account is deleted.",
    )  # fmt: skip
    actor_label = models.CharField("actor", max_length=150, help_text="Who acted, as named at the time.")
    ip = models.GenericIPAddressField("IP address", null=True, blank=True)
    user_agent = models.CharField(
        "client", max_length=300, blank=True, help_text="The browser or program (User-Agent)."
    )
    action = models.CharField(max_length=64)
    resource_type = models.CharField(max_length=32)
    resource_id = models.CharField(max_length=64)
    reason = models.CharField(max_length=500, blank=True)
    # What changed: {"desired_state": {"from": "running", "to": "paused"}}.
    delta = models.JSONField("what changed", default=dict, blank=True, help_text="Each field's value before and after.")
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    error_code = models.CharField(max_length=8, blank=True, help_text="The E10xxx code of a refusal or failure.")
    idempotency_key = models.CharField(
        max_length=255, blank=True, help_text="The caller's key: a retried request is answered once."
    )
    request_id = models.CharField(
        "request ID", max_length=64, blank=True, help_text="The request's X-Request-ID, as in the logs."
    )
    batch_id = models.UUIDField("batch", null=True, blank=True, help_text="The bulk batch this change was part of.")

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [
            # The audit page: a tenant's latest entries; one resource's history; a batch.
            models.Index(fields=["tenant", "-occurred_at"], name="audit_tenant_time"),
            models.Index(fields=["tenant", "resource_type", "resource_id"], name="audit_tenant_resource"),
            models.Index(fields=["batch_id"], name="audit_batch"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_label} {self.action} {self.resource_type}:{self.resource_id} ({self.outcome})"
