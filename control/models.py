"""Idempotency records of control requests (docs/architecture.md, "Idempotency"), and bulk batches."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from tenancy.models import Tenant


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


class Batch(models.Model):
    """One bulk operation over many agents, run in the background; each agent's change is
    audited under the batch's id."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+", verbose_name="started by"
    )
    action = models.CharField(max_length=16, help_text="pause, resume or stop, for every agent of the batch.")
    reason = models.CharField(max_length=500, blank=True)
    # Set on an undo: the batch it reverts.
    undo_of = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="undone_by", verbose_name="undoes",
        help_text="The batch this one changes back.",
    )  # fmt: skip
    created_at = models.DateTimeField("started at")
    finished_at = models.DateTimeField(null=True, blank=True, help_text="Empty while the batch runs.")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.action} × {self.items.count()} ({self.pk})"


class ItemOutcome(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCESS = "success", "Done"
    NOOP = "noop", "Nothing to do"
    SKIPPED = "skipped", "Skipped"
    FAILED = "failed", "Failed"


class BatchItem(models.Model):
    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="items")
    agent = models.ForeignKey("fleet.Agent", on_delete=models.CASCADE, related_name="+")
    outcome = models.CharField(max_length=16, choices=ItemOutcome.choices, default=ItemOutcome.PENDING)
    error_code = models.CharField(max_length=8, blank=True)
    message = models.CharField(max_length=300, blank=True)
    # The agent's version after this item's change: an undo skips agents changed since.
    version = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["batch", "agent"], name="batchitem_batch_agent_unique")]

    def __str__(self) -> str:
        return f"{self.agent_id}: {self.outcome}"
