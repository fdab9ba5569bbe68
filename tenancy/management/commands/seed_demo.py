"""Demo tenants and users for `make run`; safe to run again (it updates, never duplicates)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from tenancy import services
from tenancy.models import ApiToken, Membership, Role, Tenant

DEMO_PASSWORD = "demo-console-2026"  # noqa: S105 - a published demo login for the local console
TENANTS = [("acme", "Acme Research"), ("globex", "Globex Labs")]
USERS = [
    # username, {tenant slug: role}, staff?
    ("alice", {"acme": Role.ADMIN, "globex": Role.VIEWER}, False),
    ("oscar", {"acme": Role.OPERATOR}, False),
    ("vera", {"acme": Role.VIEWER}, False),
    ("bob", {"globex": Role.ADMIN}, False),
    ("root", {}, True),
]


class Command(BaseCommand):
    help = "Create the demo tenants, users and one API token per tenant (printed for the simulator)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--token-file", help="Write 'slug token' lines here for the fleet simulator.")

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        tenants = {}
        for slug, name in TENANTS:
            tenants[slug], _ = Tenant.objects.update_or_create(slug=slug, defaults={"name": name})
        user_model = get_user_model()
        for username, roles, staff in USERS:
            user, _ = user_model.objects.get_or_create(username=username, defaults={"email": f"{username}@example.com"})
            user.set_password(DEMO_PASSWORD)
            user.is_staff = user.is_superuser = staff
            user.save()
            for slug, role in roles.items():
                Membership.objects.update_or_create(user=user, tenant=tenants[slug], defaults={"role": role})
        lines = []
        for slug, tenant in tenants.items():
            # A fresh simulator token each run; the previous one is revoked.
            for old in ApiToken.objects.filter(tenant=tenant, name="demo simulator", revoked_at__isnull=True):
                services.token_revoke(token=old)
            _, plain = services.token_create(tenant=tenant, name="demo simulator", created_by=None)
            lines.append(f"{slug} {plain}")
        if options.get("token_file"):
            with open(options["token_file"], "w") as handle:
                handle.write("\n".join(lines) + "\n")
        self.stdout.write(f"Demo logins (password for all: {DEMO_PASSWORD}):")
        for username, roles, _staff in USERS:
            where = ", ".join(f"{role.label.lower()} of {slug}" for slug, role in roles.items()) or "platform superuser"
            self.stdout.write(f"  {username:<6} {where}")
