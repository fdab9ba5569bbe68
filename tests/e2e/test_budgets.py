"""In Chromium: a tenant admin removes a budget from the cost page, asked to confirm first."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from audit.models import AuditEntry
from costs.models import Budget
from tests.conftest import LiveServer
from tests.e2e.test_journey import sign_in
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_admin_removes_a_budget_once_they_confirm(page: Page, asgi_server: LiveServer, admin_a: User, tenant_a):
    Budget.objects.create(tenant=tenant_a, name="Search", selector="", monthly_usd=500, auto_pause=True)
    Budget.objects.create(tenant=tenant_a, name="Ads", selector="", monthly_usd=100)
    page.goto(f"{asgi_server.url}/login/")
    sign_in(page, "alice", PASSWORD)
    page.goto(f"{asgi_server.url}/t/acme/costs/")

    # Dismissed: nothing is removed.
    page.get_by_test_id("budget-search").get_by_role("button", name="Remove…").click()
    confirm = page.get_by_role("dialog", name=re.compile(r"^Remove the budget “Search”\?"))
    expect(confirm).to_contain_text("the agents it paused are resumed")
    confirm.get_by_role("button", name="Cancel").click()
    expect(confirm).to_be_hidden()
    assert Budget.objects.count() == 2

    page.get_by_test_id("budget-search").get_by_role("button", name="Remove…").click()
    page.get_by_role("dialog", name=re.compile(r"^Remove the budget")).get_by_role("button", name="Remove").click()
    expect(page.get_by_role("status").filter(has_text="Budget “Search” removed")).to_be_visible()
    expect(page.get_by_test_id("budget-search")).to_have_count(0)
    expect(page.get_by_test_id("budget-ads")).to_be_visible()
    assert list(Budget.objects.values_list("name", flat=True)) == ["Ads"]
    assert AuditEntry.objects.get(action="budget.remove").actor_label == "alice"


def test_a_budgets_countdown_moves_on_the_open_page_when_usage_arrives(
    page: Page, asgi_server: LiveServer, admin_a: User, tenant_a, agent_a, monkeypatch
):
    from datetime import UTC, datetime
    from decimal import Decimal

    from django.utils import timezone

    from audit.services import Actor
    from costs import services as cost_services
    from costs.services import NewUsage, PriceSpec, price_add, usage_record

    monkeypatch.setattr(cost_services, "SPENT_EVERY", 0.0)
    price_add(
        spec=PriceSpec("m", Decimal("1"), Decimal("0"), datetime(2026, 1, 1, tzinfo=UTC)), tenant_id=None,
        actor=Actor(user=admin_a),
    )  # fmt: skip
    Budget.objects.create(tenant=tenant_a, name="Search", selector="", monthly_usd=500)
    page.goto(f"{asgi_server.url}/login/")
    sign_in(page, "alice", PASSWORD)
    page.goto(f"{asgi_server.url}/t/acme/costs/")
    countdown = page.get_by_test_id("budget-search").get_by_test_id("countdown")
    expect(countdown).to_have_text("nothing is being spent now")
    expect(page.locator("body.live-on")).to_have_count(1)  # the page's socket is open

    # $100 spent in the last minute: $100 an hour, $400 left, so four hours (or the month
    # ends first) — told over the hub, read again by the page, no reload.
    usage_record(tenant_id=tenant_a.pk, records=[NewUsage(agent_a.pk, "m", timezone.now(), 100_000_000, 0)])
    expect(countdown).to_have_text(re.compile(r"^\$100\.00/h: (runs out in ~[34] h \d+ min|lasts the month)"))
    expect(page.get_by_test_id("budget-search")).to_contain_text("$100.00")
