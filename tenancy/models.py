from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models


class Role(models.TextChoices):
    """Ordered: each role may do everything the ones before it may."""

    VIEWER = "viewer", "Viewer"
    OPERATOR = "operator", "Operator"
    ADMIN = "admin", "Admin"

    @property
    def rank(self) -> int:
        return ROLE_RANK[self]

    def allows(self, need: Role) -> bool:
        return ROLE_RANK[self] >= ROLE_RANK[need]


ROLE_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}

slug_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$",
    "Use 1–50 lowercase letters, digits and inner hyphens.",
)


class Tenant(models.Model):
    slug = models.SlugField(max_length=50, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tenant"], name="membership_user_tenant_unique")]
        ordering = ["tenant__name"]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} ({self.role})"

    @property
    def role_enum(self) -> Role:
        return Role(self.role)

    def allows(self, need: Role) -> bool:
        return self.role_enum.allows(need)

    # What the role may do, for pages to ask (never compare role names in a template).
    @property
    def can_pause(self) -> bool:
        """Pause and resume agents (also in bulk), acknowledge and snooze alerts."""
        return self.allows(Role.OPERATOR)

    @property
    def can_stop(self) -> bool:
        """Emergency-stop and restart agents, and set their quotas."""
        return self.allows(Role.ADMIN)

    @property
    def can_manage(self) -> bool:
        """Manage the tenant: its API tokens and members."""
        return self.allows(Role.ADMIN)


class Token(models.Model):
    """What every API token stores: a name, its first characters, a SHA-256 of the whole
    token (never the token), and when it was made, last used and revoked."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, help_text="The token's first characters, to recognise it.")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class PersonalToken(Token):
    """A person's token for the JSON API: it acts as that user, with the user's role in
    each tenant."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="personal_tokens")


class ApiToken(Token):
    """A tenant's token for agents and programs."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_tokens")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
