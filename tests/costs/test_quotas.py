"""``cost_usd`` quotas (costs/selectors.py, control): set through control like any quota,
counted in whole cents rounded up, shown as money on the agent's page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from audit.services import Actor
from control.rules import Action, ControlRequest
from control.services import control_execute
from core import money
from core.errors import InterfaceError
from costs.selectors import quota_usage, quota_use_percent
from costs.services import NewUsage, PriceSpec, price_add, usage_record
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def priced(admin_a):
    price_add(
        spec=PriceSpec("gpt-4o", Decimal("2.5"), Decimal("10"), datetime(2026, 1, 1, tzinfo=UTC)), tenant_id=None,
        actor=Actor(user=admin_a),
    )  # fmt: skip


def quota(agent, user, limit, period="day"):
    return control_execute(
        actor=Actor(user=user),
        request=ControlRequest(Action.QUOTA, str(agent.pk), quota_type="cost_usd", period=period, new_limit=limit),
    )


def test_an_admin_sets_a_cost_quota_in_cents_and_the_spend_is_counted_rounded_up(tenant_a, agent_a, admin_a, priced):
    quota(agent_a, admin_a, 5_000)
    agent_a.refresh_from_db()
    assert agent_a.quotas == {"cost_usd": {"day": 5_000}}
    now = timezone.now()
    usage_record(
        tenant_id=tenant_a.pk,
        records=[
            NewUsage(agent_a.pk, "gpt-4o", now - timedelta(minutes=1), 1_000_001, 0),  # $2.5000025
            NewUsage(agent_a.pk, "mystery", now, 10_000_000, 0),  # no price: not counted
        ],
    )
    assert quota_usage(agent_a, now) == {"cost_usd": {"day": 251}}
    assert quota_use_percent(tenant_a.pk, now) == {agent_a.pk: pytest.approx(100 * 251 / 5_000)}
    page = client_for(admin_a).get(f"/t/acme/agents/{agent_a.pk}/").content.decode()
    assert "$2.51 / $50.00" in page


def test_a_cost_quota_must_be_whole_cents(agent_a, admin_a):
    with pytest.raises(InterfaceError) as refused:
        quota(agent_a, admin_a, "12.50")
    assert refused.value.code == "E10303"


def test_the_rounding_rule_for_quotas():
    assert money.quota_cents(Decimal("2.5000025")) == 251
    assert money.quota_cents(Decimal("2.50")) == 250
    assert money.quota_cents(Decimal("0")) == 0
