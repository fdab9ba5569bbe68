"""``python manage.py verify_audit [--tenant SLUG] [--checkpoint SEQ:MAC]``: check each
tenant's audit chain (docs/audit.md, "Verifying"), name the first broken entry, and print
each head as a checkpoint to keep elsewhere. Exits 1 if a chain is broken."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from audit import chain
from audit.models import AuditEntry
from tenancy.models import Tenant


class Command(BaseCommand):
    help = "Verify the audit trail's keyed hash chain of each tenant (or one) and print its checkpoint."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--tenant", help="The tenant's slug; by default every tenant with entries.")
        parser.add_argument(
            "--checkpoint",
            help="A checkpoint printed by an earlier run (SEQ:MAC), kept outside the database: the chain must "
            "still hold it, which also catches deleted newest entries. Needs --tenant.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        checkpoint = None
        if options["checkpoint"]:
            if not options["tenant"]:
                raise CommandError("--checkpoint belongs to one tenant's chain: name it with --tenant.")
            try:
                checkpoint = chain.Checkpoint.parse(options["checkpoint"])
            except ValueError as exc:
                raise CommandError(str(exc)) from None
        if options["tenant"]:
            tenant = Tenant.objects.filter(slug=options["tenant"]).first()
            if tenant is None:
                raise CommandError(f"No tenant has the slug {options['tenant']!r}.")
            tenants = [tenant]
        else:
            with_entries = AuditEntry.objects.values("tenant_id")
            tenants = list(Tenant.objects.filter(pk__in=with_entries).order_by("slug"))
        broken = 0
        for tenant in tenants:
            verdict = chain.verify(tenant.pk, checkpoint=checkpoint)
            self.stdout.write(self.describe(tenant, verdict))
            broken += not verdict.ok
        if broken:
            raise CommandError(f"{broken} of {len(tenants)} audit chains are broken.")

    def describe(self, tenant: Tenant, verdict: chain.Verdict) -> str:
        keys = ", ".join(sorted(verdict.keys)) or "none"
        lines = []
        if verdict.ok:
            lines.append(f"{tenant.slug}: OK, {verdict.links:,} entries chained (keys: {keys})")
        else:
            lines.append(f"{tenant.slug}: BROKEN at entry {verdict.entry_id}: {verdict.problem}")
            lines.append(f"  {verdict.links:,} entries before it verify")
        if verdict.pending:
            age = (timezone.now() - verdict.oldest_pending).total_seconds() if verdict.oldest_pending else 0.0
            lines.append(
                f"  {verdict.pending:,} newer entries wait for the sealer (the oldest written {age:.0f} s ago)"
            )
        if verdict.ok and verdict.head is not None:
            lines.append(f"  checkpoint: {verdict.head}")
        return "\n".join(lines)
