"""The platform's price list from the installed genai-prices table (costs/price_list.py,
``manage.py import_prices``): dated rows with their other names, a second import that
changes nothing, a price the table now gives differently added from now, and a dry run
that writes nothing."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from audit.models import AuditEntry
from costs import pricing
from costs.models import ModelPrice
from costs.price_list import EPOCH

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("import_prices", *args, stdout=out)
    return out.getvalue()


def test_the_table_becomes_dated_platform_prices_that_price_dated_ids(tenant_a):
    said = run()
    assert ModelPrice.objects.filter(tenant__isnull=True).count() > 1000
    assert (
        "price(s) added" in said and AuditEntry.objects.filter(action="price.import", tenant__isnull=True).count() == 1
    )
    book = pricing.book(tenant_a.pk)
    now = timezone.now()
    for dated, model in (("gpt-4o-2024-08-06", "gpt-4o"), ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet")):
        found = book.find(dated, now)
        assert found is not None and found.model == model, dated
    gpt = book.find("gpt-4o", now)
    assert gpt is not None and (gpt.input_per_mtok, gpt.output_per_mtok) == (Decimal("2.5"), Decimal("10"))
    assert book.find("a-model-nobody-sells", now) is None
    # A price the table dates starts that day; the first of a model, at the start of time.
    assert (
        ModelPrice.objects.filter(model="gpt-4o", tenant__isnull=True).earliest("effective_from").effective_from
        == EPOCH
    )


def test_a_second_import_changes_nothing_and_a_changed_price_is_added_from_now(tenant_a):
    run()
    count = ModelPrice.objects.count()
    assert "0 price(s) added, 0 corrected" in run()
    assert ModelPrice.objects.count() == count

    # The list's row drifted from the table (say, it was edited by hand): the table's price
    # comes back as a correction from now; the old row, and past costs, stay.
    row = ModelPrice.objects.filter(model="gpt-4o", tenant__isnull=True).latest("effective_from")
    ModelPrice.objects.filter(pk=row.pk).update(input_per_mtok=Decimal("9.99"))
    before = timezone.now()
    said = run()
    assert "1 corrected from now" in said and "gpt-4o from" in said
    newest = ModelPrice.objects.filter(model="gpt-4o", tenant__isnull=True).latest("effective_from")
    assert newest.effective_from >= before and newest.input_per_mtok == Decimal("2.5")
    assert ModelPrice.objects.get(pk=row.pk).input_per_mtok == Decimal("9.99")


def test_a_dry_run_reports_and_writes_nothing():
    said = run("--dry-run")
    assert "price(s) added" in said and "Dry run: nothing was written." in said
    assert not ModelPrice.objects.exists() and not AuditEntry.objects.filter(action="price.import").exists()
