"""The prices page (costs/views.py): admins add the tenant's own prices, checked and
audited, and see which price each model they used is priced by."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from costs.models import ModelPrice, UsageRecord
from costs.services import NewUsage, price_unpriced, usage_record
from tests.conftest import client_for

pytestmark = pytest.mark.django_db
URL = "/t/acme/costs/prices/"


def test_an_admin_adds_a_price_and_the_unpriced_usage_gets_it(tenant_a, agent_a, admin_a):
    usage_record(
        tenant_id=tenant_a.pk,
        records=[NewUsage(agent_a.pk, "house-llm-2", timezone.now() - timedelta(minutes=1), 1_000_000, 0)],
    )
    page = client_for(admin_a).get(URL).content.decode()
    assert "<code>house-llm-2</code>" in page and "no price: its cost is unknown" in page
    posted = client_for(admin_a).post(
        URL, {"model": "house-llm", "aliases": "house-llm-*", "input_per_mtok": "0.50", "output_per_mtok": "1.5",
              "effective_from": (timezone.now() - timedelta(hours=1)).isoformat()},
    )  # fmt: skip
    assert posted.status_code == 302
    row = ModelPrice.objects.get(tenant=tenant_a)
    assert (row.model, row.aliases, row.input_per_mtok, row.source) == (
        "house-llm",
        ["house-llm-*"],
        Decimal("0.5"),
        "the console",
    )
    entry = AuditEntry.objects.get(action="price.add")
    assert entry.ip == "127.0.0.1" and entry.actor_label == "alice"
    price_unpriced(tenant_id=tenant_a.pk)  # what the task does after the commit
    assert UsageRecord.objects.get().cost_usd == Decimal("0.500000000")
    again = client_for(admin_a).get(URL).content.decode()
    assert "no price: its cost is unknown" not in again and "<td>house-llm</td>" in again


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"input_per_mtok": "-1"}, "E10602"),
        ({"output_per_mtok": "0.0000001"}, "E10603"),
        ({"effective_from": "soon"}, "E10601"),
        ({"model": ""}, "E10601"),
    ],
)
def test_a_bad_price_is_refused_on_the_page(tenant_a, admin_a, fields, code):
    page = client_for(admin_a).post(URL, {"model": "m", "input_per_mtok": "1", "output_per_mtok": "2", **fields})
    assert page.status_code in (400, 422) and code in page.content.decode()
    assert not ModelPrice.objects.exists()


def test_only_admins_see_prices(viewer_a, operator_a):
    assert client_for(viewer_a).get(URL).status_code == 403
    assert (
        client_for(operator_a).post(URL, {"model": "m", "input_per_mtok": "1", "output_per_mtok": "1"}).status_code
        == 403
    )
