from __future__ import annotations

from datetime import datetime

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


class Scope(models.TextChoices):
    """What a token may be used for (docs/api.md, "Token scopes and expiry")."""

    READ = "read", "Read"
    CONTROL = "control", "Control"
    INGEST = "ingest", "Ingest"


def scope_text(scopes: object) -> str:
    """The stored form of a set of scopes: known names, sorted, space-separated."""
    return " ".join(sorted({str(s) for s in scopes} & set(Scope.values)))  # type: ignore[attr-defined]


class Token(models.Model):
    """What every API token stores: a name, its first characters, a SHA-256 of the whole
    token (never the token), its scopes, and when it was made, last used, revoked and
    when it expires (never, if ``expires_at`` is empty)."""

    # The scopes a token of this kind may carry, and those it gets when none are chosen.
    ALLOWED_SCOPES: frozenset[str] = frozenset()
    DEFAULT_SCOPES: frozenset[str] = frozenset()

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, help_text="The token's first characters, to recognise it.")
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: the token never expires.")
    scopes = models.CharField(max_length=64, help_text="Space-separated: read, control, ingest.")

    class Meta:
        abstract = True
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def scope_list(self) -> list[str]:
        return self.scopes.split()

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes.split()

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


class PersonalToken(Token):
    """A person's token for the JSON API: it acts as that user, with the user's role in
    each tenant."""

    ALLOWED_SCOPES = frozenset({Scope.READ, Scope.CONTROL})
    DEFAULT_SCOPES = frozenset({Scope.READ, Scope.CONTROL})

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="personal_tokens")


class ApiToken(Token):
    """A tenant's token for agents and programs."""

    ALLOWED_SCOPES = frozenset({Scope.INGEST, Scope.READ})
    DEFAULT_SCOPES = frozenset({Scope.INGEST, Scope.READ})

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_tokens")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
