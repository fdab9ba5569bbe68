"""The audit trail: who did what, when, from where, and how it ended (docs/audit.md).

Append-only at every level: the ORM refuses to change or delete an entry (``AuditEntry``'s
manager and ``save``), Django admin shows it read-only, and on PostgreSQL triggers refuse
UPDATE, DELETE and TRUNCATE. Each new entry waits in ``AuditPending`` (a database trigger
puts it there, whoever inserts it) until the sealer chains it: its ``AuditSeal`` holds its
place in the tenant's chain and its keyed MAC (``audit.chain``)."""

from __future__ import annotations

from typing import Any, NoReturn

from django.conf import settings
from django.db import models

from tenancy.models import Tenant


class Outcome(models.TextChoices):
    SUCCESS = "success", "Succeeded"
    NOOP = "noop", "Nothing to do"
    DENIED = "denied", "Refused"
    FAILED = "failed", "Failed"


class AppendOnly(Exception):
    """An entry of the audit trail was to be changed or deleted."""


def _refuse(*args: Any, **kwargs: Any) -> NoReturn:
    raise AppendOnly("the audit trail is append-only: entries are never changed or deleted")


class AppendOnlyQuerySet(models.QuerySet[Any]):
    update = _refuse
    delete = _refuse
    bulk_update = _refuse
    update_or_create = _refuse


class AppendOnlyModel(models.Model):
    """Rows that are written once: a saved row is never saved again, nor deleted."""

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            _refuse()
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        _refuse()


class AuditEntry(AppendOnlyModel):
    # None: the platform's own trail (a sign-in of an unknown name, a staff change in
    # Django admin to something of no tenant), which platform staff read in Django admin.
    # No index of its own on tenant or actor: the indexes below lead with the tenant, and no
    # read goes by the account's id; every index is paid for on each control operation.
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.PROTECT, related_name="audit_entries", db_index=False,
        help_text="Empty for the platform's own trail.",
    )  # fmt: skip
    occurred_at = models.DateTimeField()
    # The actor: a user, or "system" (an expiry, a periodic task). The id stays when the
    # account is deleted (no constraint: the row is never updated, and its MAC covers it);
    # the label names who it was.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.DO_NOTHING, db_constraint=False,
        db_index=False, related_name="+", verbose_name="account", help_text="The account that acted; empty for the system.",
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


class AuditPending(models.Model):
    """An entry not yet chained. Written by a database trigger on every insert into the
    trail (audit/migrations/0005_chain.py), removed by the sealer as it seals the entry."""

    # No constraints, one index: the trigger writes a row for an entry it has just seen
    # inserted, and entries are never deleted; a deferred check would cost every commit.
    entry = models.OneToOneField(
        AuditEntry, primary_key=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    tenant = models.ForeignKey(
        Tenant, null=True, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )

    class Meta:
        indexes = [models.Index(fields=["tenant", "entry"], name="audit_pending_tenant")]

    def __str__(self) -> str:
        return f"entry {self.entry_id}, waiting to be sealed"


class AuditSeal(AppendOnlyModel):
    """An entry's link in its tenant's chain: its place (``seq``, from 1 without gaps) and
    the HMAC of its content and the previous link's MAC under the key ``key_id``
    (docs/audit.md, "The chain"). Append-only, as the entries are."""

    entry = models.OneToOneField(AuditEntry, primary_key=True, on_delete=models.DO_NOTHING, related_name="seal")
    tenant = models.ForeignKey(Tenant, null=True, on_delete=models.PROTECT, related_name="+")  # None: the platform's
    seq = models.PositiveBigIntegerField("sequence")
    mac = models.CharField("MAC", max_length=64)
    key_id = models.CharField("key", max_length=16)
    sealed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "seq"], name="audit_seal_tenant_seq"),
            # NULLs are distinct in a unique index: the platform's chain needs its own.
            models.UniqueConstraint(
                fields=["seq"], condition=models.Q(tenant__isnull=True), name="audit_seal_platform_seq"
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} of tenant {self.tenant_id}"
