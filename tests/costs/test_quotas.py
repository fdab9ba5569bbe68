"""``cost_usd`` quotas (costs/selectors.py, control): set through control like any quota,
in whole cents, typed and shown in dollars in the agent page's quota dialog (read exactly,
core/money.py), counted in whole cents rounded up, shown as money on the agent's page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from audit.services import Actor
from control.rules import Action, ControlRequest
from control.services import control_execute
from core import money
from core.errors import InterfaceError
from core.inputs import InputProblem
from costs.selectors import quota_usage, quota_use_percent
from costs.services import NewUsage, PriceSpec, price_add, usage_record
from fleet.models import Agent
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


# --- the agent page's quota dialog, in dollars --------------------------------------------


def in_dialog(user, agent, typed: str, period: str = "day"):
    """The quota dialog sent with a cost limit as typed; the page it lands on."""
    form = {"quota_type": "cost_usd", "period": period, "new_limit": typed, "reason": "spend review"}
    return client_for(user).post(f"/t/acme/agents/{agent.pk}/control/quota/", form, follow=True)


def dialog_of(page: str) -> str:
    start = page.index('<dialog class="confirm" id="dialog-quota"')
    return page[start : page.index("</dialog>", start)]


@pytest.mark.parametrize(
    ("typed", "cents"),
    [("5.00", 500), ("$5", 500), ("1,250.50", 125_050), (" 0.07 ", 7), ("12", 1_200), ("$.5", 50), ("0", 0)],
)
def test_an_admin_types_a_cost_limit_in_dollars_and_it_is_stored_in_cents(agent_a, admin_a, typed, cents):
    response = in_dialog(admin_a, agent_a, typed)
    assert response.status_code == 200 and "New limit sent to the agent." in response.content.decode()
    agent_a.refresh_from_db()
    assert agent_a.quotas == {"cost_usd": {"day": cents}}
    entry = AuditEntry.objects.get(action="agent.quota")
    assert entry.outcome == "success" and entry.delta == {"quotas.cost_usd.day": {"from": None, "to": cents}}
    # The dialog shows the limit now in dollars, as it was typed.
    dialog = dialog_of(client_for(admin_a).get(f"/t/acme/agents/{agent_a.pk}/").content.decode())
    assert f"Limits now: cost {money.usd(money.from_cents(cents))} per day." in dialog
    assert '<option value="cost_usd">Cost (US dollars)</option>' in dialog


def test_the_dialog_shows_every_limit_now_cost_in_dollars_and_counts_as_counts(agent_a, admin_a):
    agent_a.quotas = {"tokens": {"hour": 20_000}, "cost_usd": {"month": 125_050, "day": 500}}
    agent_a.save()
    dialog = dialog_of(client_for(admin_a).get(f"/t/acme/agents/{agent_a.pk}/").content.decode())
    assert "Limits now: tokens 20,000 per hour; cost $5.00 per day, $1,250.50 per month." in dialog
    assert 'inputmode="decimal"' in dialog


@pytest.mark.parametrize(
    ("typed", "said"),
    [
        ("-5", "The cost limit cannot be negative."),
        ("-$5.00", "The cost limit cannot be negative."),
        ("5.001", "The cost limit is finer than a cent: give at most 2 decimal places."),
        ("0.125", "The cost limit is finer than a cent"),
        ("NaN", "The cost limit is not an amount in US dollars such as 5.00, $5 or 1,250.50."),
        ("Infinity", "is not an amount in US dollars"),
        ("1e3", "is not an amount in US dollars"),
        ("12,50", "is not an amount in US dollars"),  # not 1,250 nor 12.50: said, not guessed
        ("five", "is not an amount in US dollars"),
        ("", "is not an amount in US dollars"),
        ("10,000,000,000.01", "The cost limit is at most $10,000,000,000.00."),
    ],
)
def test_a_cost_limit_that_is_no_amount_of_dollars_is_refused_in_the_dialog_and_nothing_is_stored(
    agent_a, admin_a, typed, said
):
    agent_a.quotas = {"cost_usd": {"day": 500}}
    agent_a.save()
    version = Agent.objects.get(pk=agent_a.pk).version
    page = in_dialog(admin_a, agent_a, typed).content.decode()
    dialog = dialog_of(page)
    assert "data-open-on-load" in dialog and said in dialog and "(E10303)" in dialog
    assert '<option value="cost_usd" selected>' in dialog and "spend review</textarea>" in dialog  # kept as typed
    stored = Agent.objects.get(pk=agent_a.pk)
    assert stored.quotas == {"cost_usd": {"day": 500}} and stored.version == version
    entry = AuditEntry.objects.get(action="agent.quota")  # refused by the service, so recorded
    assert (entry.outcome, entry.error_code) == ("denied", "E10303")


def test_a_control_character_in_a_cost_limit_is_refused_at_the_input_boundary(agent_a, admin_a):
    response = client_for(admin_a).post(
        f"/t/acme/agents/{agent_a.pk}/control/quota/", {"quota_type": "cost_usd", "new_limit": "5\x00"}
    )
    assert response.status_code == 400 and "E10303" in response.content.decode()
    assert Agent.objects.get(pk=agent_a.pk).quotas == {}


def test_an_operator_is_refused_a_cost_limit_for_the_role_before_the_amount(agent_a, operator_a):
    response = client_for(operator_a).post(
        f"/t/acme/agents/{agent_a.pk}/control/quota/", {"quota_type": "cost_usd", "new_limit": "-5"}
    )
    assert response.status_code == 403
    assert AuditEntry.objects.get(action="agent.quota").error_code == "E10004"
    assert Agent.objects.get(pk=agent_a.pk).quotas == {}


def test_dollars_are_read_exactly_into_cents():
    assert money.cents_from_dollars("1,234,567.89") == 123_456_789
    assert money.cents_from_dollars("0.10") == 10  # as a float, 0.1 * 100 is 10.000000000000002
    assert money.cents_from_dollars("5.000") == 500  # finer digits that are zero change nothing
    assert money.cents_from_dollars("9" * 37 + ".99") == int("9" * 39)  # exact far past a float's digits
    for typed in ("٥", "5\x00", "+5", "$ 5", "5$", "1,,000", "-0", "9" * 41):
        with pytest.raises(InputProblem):
            money.cents_from_dollars(typed)
