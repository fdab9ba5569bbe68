"""Idempotency records of control requests (NOTES.md, "Idempotency")."""

from __future__ import annotations

from django.db import models

from l10console.tenancy.models import Tenant


class IdempotencyRecord(models.Model):
    """A control request by its caller's key: claimed in the transaction that makes the
    change, with the answer stored beside it, so a retry gets the same answer."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    # "user:<id>": keys are scoped by caller, so two people's keys never collide.
    caller = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="sha256 of the request it came with")
    status_code = models.PositiveSmallIntegerField()
    response = models.JSONField()
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "caller", "key"], name="idempotency_tenant_caller_key_unique")
        ]
        # The purge task: expired records.
        indexes = [models.Index(fields=["expires_at"], name="idempotency_expires")]

    def __str__(self) -> str:
        return f"{self.caller} {self.key}"
