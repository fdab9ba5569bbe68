"""``python manage.py import_prices [--dry-run]``: bring the platform's price list up to
the installed ``genai-prices`` table and report what changed (docs/costs.md, "The price
list"). Nothing is fetched: the table is the package's; upgrade it to get newer prices."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from audit.services import Actor
from costs.price_list import import_prices


class Command(BaseCommand):
    help = "Load the genai-prices table into the platform's dated price list and report what changed."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Report what would change; write nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        report = import_prices(actor=Actor(user=None, name="import_prices"), dry_run=options["dry_run"])
        lines = report.lines()
        for line in lines if options["verbosity"] > 0 else lines[:1]:  # -v 0: the summary only
            self.stdout.write(line)
        if options["dry_run"]:
            self.stdout.write("Dry run: nothing was written.")
