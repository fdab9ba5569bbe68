"""Correcting a price (costs/services.py, costs/views.py): the dry run says how many
records and by how much, nothing written; confirmed, the price is corrected, audited,
and its records are priced again (the task), their hours rolled up again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from audit.services import Actor
from costs.models import ModelPrice, UsageRecord
from costs.services import NewUsage, PriceSpec, price_add, reprice, usage_record
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def priced(tenant_a, tenant_b, agent_a, agent_b, admin_a):
    ours = price_add(
        spec=PriceSpec("house", Decimal("1"), Decimal("2"), datetime(2026, 1, 1, tzinfo=UTC)), tenant_id=tenant_a.pk,
        actor=Actor(user=admin_a),
    )  # fmt: skip
    price_add(
        spec=PriceSpec("house", Decimal("1"), Decimal("2"), datetime(2026, 1, 1, tzinfo=UTC)), tenant_id=tenant_b.pk,
        actor=Actor(user=admin_a),
    )  # fmt: skip
    now = timezone.now()
    for n in range(412):
        usage_record(
            tenant_id=tenant_a.pk, records=[NewUsage(agent_a.pk, "house", now - timedelta(minutes=n), 100_000, 50_000)]
        )
    usage_record(tenant_id=tenant_b.pk, records=[NewUsage(agent_b.pk, "house", now, 100_000, 50_000)])
    return ours


def test_the_dry_run_then_the_correction(tenant_a, admin_a, priced):
    url = f"/t/acme/costs/prices/{priced.pk}/correct/"
    new = {"input_per_mtok": "1.5", "output_per_mtok": "2", "cached_input_per_mtok": "", "per_call": "0"}
    dry = client_for(admin_a).post(url, new).content.decode()
    # 412 records of 100,000 input tokens: $0.10 each before, $0.15 after: +$20.60.
    assert "412 records, +$20.60 ($82.40 → $103.00)" in dry
    assert ModelPrice.objects.get(pk=priced.pk).input_per_mtok == Decimal("1")  # nothing written
    assert not AuditEntry.objects.filter(action="price.correct").exists()

    done = client_for(admin_a).post(url, {**new, "confirm": "yes"})
    assert done.status_code == 302
    assert ModelPrice.objects.get(pk=priced.pk).input_per_mtok == Decimal("1.5")
    entry = AuditEntry.objects.get(action="price.correct")
    assert entry.delta["records"] == 412 and entry.delta["difference_usd"].startswith("20.6")
    assert reprice(price_id=priced.pk) == 412  # what the task does after the commit
    ours = UsageRecord.objects.filter(tenant=tenant_a)
    assert sum((r.cost_usd or Decimal(0) for r in ours), Decimal(0)) == Decimal("103")
    theirs = UsageRecord.objects.exclude(tenant=tenant_a).get()
    assert theirs.cost_usd == Decimal("0.2")  # Globex's own price is not Acme's to correct
    assert reprice(price_id=priced.pk) == 0  # again: nothing left to change


def test_a_bad_correction_or_another_tenants_price_is_refused(tenant_a, tenant_b, admin_a, operator_b, priced):
    url = f"/t/acme/costs/prices/{priced.pk}/correct/"
    bad = client_for(admin_a).post(url, {"input_per_mtok": "-2", "output_per_mtok": "2"})
    assert bad.status_code == 422 and "E10602" in bad.content.decode()
    theirs = ModelPrice.objects.get(tenant=tenant_b)
    assert client_for(admin_a).get(f"/t/acme/costs/prices/{theirs.pk}/correct/").status_code == 404
