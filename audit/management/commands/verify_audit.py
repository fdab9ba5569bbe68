"""``python manage.py verify_audit [--tenant SLUG] [--checkpoint SEQ:MAC]``: check each
tenant's audit chain (docs/audit.md, "Verifying"), name the first broken entry, and print
each head as a checkpoint to keep elsewhere. ``--export FILE`` checks an export instead
(docs/audit.md, "Verifying an export"). Exits 1 if a chain is broken."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from audit import chain, export
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
        parser.add_argument(
            "--platform", action="store_true", help="Only the platform's own trail (entries of no tenant)."
        )
        parser.add_argument("--export", help="Verify this export (CSV or JSON Lines) instead of the database.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["export"]:
            self.verify_file(options["export"])
            return
        checkpoint = None
        if options["checkpoint"]:
            if not options["tenant"] and not options["platform"]:
                raise CommandError("--checkpoint belongs to one chain: name it with --tenant (or --platform).")
            try:
                checkpoint = chain.Checkpoint.parse(options["checkpoint"])
            except ValueError as exc:
                raise CommandError(str(exc)) from None
        chains: list[tuple[str, int | None]]
        if options["platform"]:
            chains = [("platform", None)]
        elif options["tenant"]:
            tenant = Tenant.objects.filter(slug=options["tenant"]).first()
            if tenant is None:
                raise CommandError(f"No tenant has the slug {options['tenant']!r}.")
            chains = [(tenant.slug, tenant.pk)]
        else:
            with_entries = AuditEntry.objects.filter(tenant__isnull=False).values("tenant_id")
            chains = list(Tenant.objects.filter(pk__in=with_entries).order_by("slug").values_list("slug", "pk"))
            if AuditEntry.objects.filter(tenant__isnull=True).exists():
                chains.append(("platform", None))
        broken = 0
        for name, tenant_id in chains:
            verdict = chain.verify(tenant_id, checkpoint=checkpoint)
            self.stdout.write(self.describe(name, verdict))
            broken += not verdict.ok
        if broken:
            raise CommandError(f"{broken} of {len(chains)} audit chains are broken.")

    def verify_file(self, path: str) -> None:
        try:
            with open(path, encoding="utf-8", newline="") as lines:
                verdict = export.verify_export(export.read(lines), settings.AUDIT_KEYS)
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}.") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise CommandError(f"{path} is not an audit export (CSV or JSON Lines): {exc}.") from None
        if not verdict.ok:
            raise CommandError(
                f"BROKEN at entry {verdict.entry_id}: {verdict.problem} ({verdict.verified:,} before it verify)"
            )
        self.stdout.write(
            f"OK, {verdict.verified:,} entries verified; {verdict.gaps:,} places of the chains are not in this export; "
            f"{verdict.unsealed:,} were not sealed yet"
        )
        for tenant_id, head in sorted(verdict.heads.items()):
            self.stdout.write(f"  tenant {tenant_id}: last link {head}")

    def describe(self, name: str, verdict: chain.Verdict) -> str:
        keys = ", ".join(sorted(verdict.keys)) or "none"
        lines = []
        if verdict.ok:
            lines.append(f"{name}: OK, {verdict.links:,} entries chained (keys: {keys})")
        else:
            lines.append(f"{name}: BROKEN at entry {verdict.entry_id}: {verdict.problem}")
            lines.append(f"  {verdict.links:,} entries before it verify")
        if verdict.pending:
            age = (timezone.now() - verdict.oldest_pending).total_seconds() if verdict.oldest_pending else 0.0
            lines.append(
                f"  {verdict.pending:,} newer entries wait for the sealer (the oldest written {age:.0f} s ago)"
            )
        if verdict.ok and verdict.head is not None:
            lines.append(f"  checkpoint: {verdict.head}")
        return "\n".join(lines)
