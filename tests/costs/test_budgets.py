"""Monthly budgets (costs/budgets.py): set by admins with their amount and scope checked
and audited; each one's spend this month, for one tenant only; and the countdown from a
known burn rate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from audit.models import AuditEntry
from audit.services import Actor
from core.errors import InterfaceError
from costs.budgets import budget_set, status
from costs.models import Budget
from costs.services import NewUsage, PriceSpec, price_add, usage_record
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def admin(admin_a):
    return Actor(user=admin_a)


@pytest.fixture
def fleet(tenant_a, tenant_b, agent_a, agent_b, admin):
    price_add(
        spec=PriceSpec("m", Decimal("1"), Decimal("0"), datetime(2026, 1, 1, tzinfo=UTC)), tenant_id=None, actor=admin
    )
    agent_a.labels = {"team": "search"}
    agent_a.save()
    ads = AgentFactory.create(tenant=tenant_a, external_id="ads-1", labels={"team": "ads"})

    def spend(agent, dollars: int, at: datetime) -> None:  # $1 per million input tokens
        usage_record(tenant_id=agent.tenant_id, records=[NewUsage(agent.pk, "m", at, dollars * 1_000_000, 0)])

    spend(agent_a, 3, NOW - timedelta(days=3))  # this month
    spend(agent_a, 2, NOW - timedelta(minutes=30))  # this month, and in the last hour: $2 an hour
    spend(ads, 4, NOW - timedelta(days=2))
    spend(agent_a, 50, datetime(2026, 10, 30, tzinfo=UTC))  # last month
    spend(agent_b, 99, NOW - timedelta(days=1))  # another tenant's
    return ads


def test_a_budgets_spend_this_month_by_what_it_covers(tenant_a, agent_a, admin, fleet):
    whole = budget_set(tenant_id=tenant_a.pk, actor=admin, name="Acme", monthly_usd="100")
    one = budget_set(tenant_id=tenant_a.pk, actor=admin, name="Worker 1", monthly_usd="10", agent_id=agent_a.pk)
    team = budget_set(tenant_id=tenant_a.pk, actor=admin, name="Ads", monthly_usd="8.00", selector="team=ads")
    assert status(whole, NOW).spent == Decimal(9)
    assert status(one, NOW).spent == Decimal(5)
    assert status(team, NOW).spent == Decimal(4) and status(team, NOW).threshold == 50
    assert status(one, NOW).threshold == 50 and status(whole, NOW).threshold == 0


def test_the_countdown_from_a_known_burn_rate(tenant_a, agent_a, admin, fleet):
    one = budget_set(tenant_id=tenant_a.pk, actor=admin, name="Worker 1", monthly_usd="9.50", agent_id=agent_a.pk)
    found = status(one, NOW)
    assert found.burn_per_hour == Decimal(2)
    assert found.runs_out_in == timedelta(hours=2, minutes=15)  # $4.50 left at $2 an hour
    assert found.countdown(NOW) == "runs out in ~2 h 15 min at the current rate"
    quiet = status(one, NOW + timedelta(hours=2))  # nothing in the last hour
    assert quiet.runs_out_in is None and quiet.countdown(NOW) == "nothing is being spent now"
    spent = budget_set(tenant_id=tenant_a.pk, actor=admin, name="Small", monthly_usd="5", agent_id=agent_a.pk)
    assert status(spent, NOW).countdown(NOW) == "used up" and status(spent, NOW).threshold == 100
    roomy = budget_set(tenant_id=tenant_a.pk, actor=admin, name="Roomy", monthly_usd="5000", agent_id=agent_a.pk)
    assert status(roomy, NOW).countdown(NOW) == "lasts the month at the current rate"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"monthly_usd": "-1"}, "E10602"),
        ({"monthly_usd": "10.005"}, "E10603"),
        ({"monthly_usd": 10.5}, "E10603"),
        ({"selector": "colour=blue"}, "E10608"),
        ({"selector": "team=="}, "E10608"),
        ({"name": " "}, "E10601"),
    ],
)
def test_a_bad_budget_is_refused_and_nothing_is_stored(tenant_a, admin, fleet, fields, code):
    with pytest.raises(InterfaceError) as refused:
        budget_set(tenant_id=tenant_a.pk, actor=admin, **{"name": "B", "monthly_usd": "10", **fields})
    assert refused.value.code == code
    assert not Budget.objects.exists() and not AuditEntry.objects.filter(action="budget.set").exists()


def test_another_tenants_agent_is_no_budget_scope(tenant_a, agent_b, admin, fleet):
    with pytest.raises(InterfaceError) as refused:
        budget_set(tenant_id=tenant_a.pk, actor=admin, name="B", monthly_usd="10", agent_id=agent_b.pk)
    assert refused.value.code == "E10601"


def test_setting_a_budget_is_audited_with_its_change(tenant_a, admin, fleet):
    budget_set(tenant_id=tenant_a.pk, actor=admin, name="Acme", monthly_usd="100")
    budget_set(tenant_id=tenant_a.pk, actor=admin, name="Acme", monthly_usd="150", auto_pause=True)
    entries = list(AuditEntry.objects.filter(action="budget.set").order_by("pk").values_list("delta", flat=True))
    assert entries[0]["monthly_usd"] == {"from": None, "to": "100.00"}
    assert entries[1]["monthly_usd"] == {"from": "100.00", "to": "150.00"}
    assert entries[1]["auto_pause"] == {"from": False, "to": True}
    assert Budget.objects.get().monthly_usd == Decimal("150")


def test_admins_set_budgets_on_the_cost_page_and_every_member_sees_them(tenant_a, admin_a, viewer_a, fleet):
    from tests.conftest import client_for

    saved = client_for(admin_a).post(
        "/t/acme/costs/budgets/",
        {"name": "Ads", "monthly_usd": "$1,000.00", "selector": "team=ads", "auto_pause": "on"},
    )
    assert saved.status_code == 302 and saved["Location"].endswith("/t/acme/costs/#budgets")
    budget = Budget.objects.get()
    assert (budget.monthly_usd, budget.selector, budget.auto_pause) == (Decimal("1000.00"), "team=ads", True)
    entry = AuditEntry.objects.get(action="budget.set")
    assert entry.ip == "127.0.0.1" and entry.actor_label == "alice"
    page = client_for(viewer_a).get("/t/acme/costs/").content.decode()
    assert 'data-testid="budget-ads"' in page and "$1,000.00" in page and 'data-testid="budget-form"' not in page
    refused = client_for(admin_a).post("/t/acme/costs/budgets/", {"name": "X", "monthly_usd": "-5"}, follow=True)
    assert "E10602" in refused.content.decode() and Budget.objects.count() == 1
    assert client_for(viewer_a).post("/t/acme/costs/budgets/", {"name": "Y", "monthly_usd": "5"}).status_code == 403


def test_only_admins_remove_a_budget_of_their_own_tenant_and_only_by_post(
    tenant_a, tenant_b, admin_a, operator_a, viewer_a, admin, fleet
):
    from tests.conftest import client_for

    budget = budget_set(tenant_id=tenant_a.pk, actor=admin, name="Acme", monthly_usd="100")
    theirs = Budget.objects.create(tenant=tenant_b, name="Globex", monthly_usd=Decimal(100))
    url = f"/t/acme/costs/budgets/{budget.pk}/remove/"
    assert client_for(viewer_a).post(url).status_code == 403
    assert client_for(operator_a).post(url).status_code == 403
    assert client_for(admin_a).get(url).status_code == 405
    assert client_for(admin_a).post(f"/t/acme/costs/budgets/{theirs.pk}/remove/").status_code == 404
    assert client_for(admin_a).post("/t/acme/costs/budgets/999999/remove/").status_code == 404
    assert Budget.objects.count() == 2 and not AuditEntry.objects.filter(action="budget.remove").exists()
    page = client_for(admin_a).get("/t/acme/costs/").content.decode()
    assert f'action="/t/acme/costs/budgets/{budget.pk}/remove/"' in page and 'data-confirm="Remove the budget' in page
    assert "/remove/" not in client_for(viewer_a).get("/t/acme/costs/").content.decode()
    removed = client_for(admin_a).post(url)
    assert removed.status_code == 302 and removed["Location"].endswith("/t/acme/costs/#budgets")
    assert list(Budget.objects.values_list("name", flat=True)) == ["Globex"]
    assert AuditEntry.objects.get(action="budget.remove").tenant_id == tenant_a.pk


def test_removing_another_tenants_budget_is_refused_and_changes_nothing(tenant_a, tenant_b, admin):
    from costs.budgets import budget_remove

    theirs = Budget.objects.create(tenant=tenant_b, name="Globex", monthly_usd=Decimal(100))
    with pytest.raises(InterfaceError) as refused:
        budget_remove(tenant_id=tenant_a.pk, actor=admin, budget_id=theirs.pk)
    assert refused.value.code == "E10610" and refused.value.http_status == 404
    assert Budget.objects.filter(pk=theirs.pk).exists()
