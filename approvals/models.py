"""Human-in-the-loop approvals (docs/approvals.md): an agent asks before a step a person
must allow; a person decides in the console; the agent goes on."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from tenancy.models import Role, Tenant


class State(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"


class OnTimeout(models.TextChoices):
    REJECT = "reject", "Reject"
    APPROVE = "approve", "Approve"


class ApprovalRequest(models.Model):
    """One question an agent asked: what it wants to do (``action``, ``summary``,
    ``details``), until when a person may answer, who may (``needs_role``,
    ``needs_approvers``: fixed by the tenant's rules when it was asked), and the answer."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="approval_requests")
    agent = models.ForeignKey("fleet.Agent", on_delete=models.CASCADE, related_name="approval_requests")
    # The agent's own name for the request: asking again with it (after a restart) gets
    # this request back, and its decision if there is one.
    key = models.CharField(max_length=200)
    action = models.CharField(max_length=100)
    summary = models.CharField(max_length=500)
    details = models.JSONField(null=True, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    on_timeout = models.CharField(max_length=10, choices=OnTimeout.choices, default=OnTimeout.REJECT)
    needs_role = models.CharField(max_length=16, choices=Role.choices, default=Role.OPERATOR)
    needs_approvers = models.PositiveSmallIntegerField(default=1)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)
    # The person whose approval or rejection decided it (None: it expired).
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by_label = models.CharField(max_length=150, blank=True)
    comment = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["agent", "key"], name="approval_agent_key_unique"),
            models.CheckConstraint(condition=models.Q(needs_approvers__in=[1, 2]), name="approval_approvers_1_or_2"),
        ]
        indexes = [
            # The inbox: a tenant's pending requests, oldest first; the history, newest first.
            models.Index(fields=["tenant", "state", "created_at"], name="approval_inbox"),
            models.Index(fields=["tenant", "-created_at"], name="approval_history"),
            # Expiry: the pending requests past their time.
            models.Index(fields=["expires_at"], condition=models.Q(state="pending"), name="approval_due"),
        ]

    def __str__(self) -> str:
        return f"{self.action}: {self.summary[:60]}"

    @property
    def approved(self) -> bool | None:
        """True or False once decided (an expired request by its ``on_timeout``); None while pending."""
        if self.state == State.PENDING:
            return None
        if self.state == State.EXPIRED:
            return self.on_timeout == OnTimeout.APPROVE
        return self.state == State.APPROVED


class ApprovalVote(models.Model):
    """An approval given to a request that needs two approvers, until the second comes."""

    request = models.ForeignKey(ApprovalRequest, on_delete=models.CASCADE, related_name="votes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    user_label = models.CharField(max_length=150)
    comment = models.TextField(blank=True)
    at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["request", "user"], name="approval_vote_once")]

    def __str__(self) -> str:
        return f"{self.user_label} approved {self.request_id}"


class ApprovalRule(models.Model):
    """Who must decide the requests of some actions or agents: an admin instead of an
    operator, or two different people. A request takes the strictest rule that matches it
    when it is asked."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="approval_rules")
    # An exact action ("email.send"), a prefix ending in "*" ("deploy.*"), or "*" for all.
    action = models.CharField(max_length=100, default="*")
    selector = models.CharField("label selector", max_length=2000, blank=True)
    needs_role = models.CharField(max_length=16, choices=Role.choices, default=Role.OPERATOR)
    needs_approvers = models.PositiveSmallIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["action", "selector"]
        constraints = [
            models.CheckConstraint(condition=models.Q(needs_approvers__in=[1, 2]), name="approval_rule_approvers"),
            models.CheckConstraint(
                condition=models.Q(needs_role__in=[Role.OPERATOR, Role.ADMIN]), name="approval_rule_role"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.selector}".strip()

    def matches_action(self, action: str) -> bool:
        if self.action == "*" or self.action == action:
            return True
        return self.action.endswith("*") and action.startswith(self.action[:-1])
