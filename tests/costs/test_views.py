"""The cost page and its CSV exports (costs/views.py): every member of the tenant sees its
costs and no other tenant's, the unknown said loudly, the period before and the month's
projection, bad ranges answered with their codes."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from audit.services import Actor
from costs.services import NewUsage, PriceSpec, price_add, usage_record
from tests.conftest import client_for
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db
URL = "/t/acme/costs/"


def around_now() -> dict[str, str]:
    """A custom range of the last hour and the next: it holds the usage below whatever the
    time of day (no midnight to cross), and it is partial."""
    now = timezone.now()
    return {
        "range": "custom",
        "start": (now - timedelta(hours=1)).isoformat(),
        "end": (now + timedelta(hours=1)).isoformat(),
    }


@pytest.fixture
def spent(tenant_a, tenant_b, agent_a, agent_b, admin_a):
    price_add(
        spec=PriceSpec("gpt-4o", Decimal("2.5"), Decimal("10"), datetime(2026, 1, 1, tzinfo=UTC)), tenant_id=None,
        actor=Actor(user=admin_a),
    )  # fmt: skip
    other = AgentFactory.create(tenant=tenant_a, external_id="worker-2", labels={"team": "ads"})
    agent_a.labels = {"team": "search"}
    agent_a.save()
    now = timezone.now()
    usage_record(
        tenant_id=tenant_a.pk,
        records=[
            NewUsage(agent_a.pk, "gpt-4o", now - timedelta(minutes=5), 400_000, 100_000),  # $2.00
            NewUsage(other.pk, "gpt-4o", now - timedelta(minutes=3), 200_000, 0),  # $0.50
            NewUsage(other.pk, "mystery-1", now - timedelta(minutes=2), 1_000, 1_000),  # unknown
        ],
    )
    usage_record(tenant_id=tenant_b.pk, records=[NewUsage(agent_b.pk, "gpt-4o", now, 4_000_000, 0)])  # $10 of Globex's


def test_a_viewer_sees_the_tenants_costs_and_no_others(viewer_a, spent):
    page = client_for(viewer_a).get(URL, around_now())
    assert page.status_code == 200
    body = page.content.decode()
    assert "$2.50" in body  # the total: $2.00 + $0.50
    assert "$10.00" not in body and "$12.50" not in body
    assert 'data-testid="unpriced"' in body and "<code>mystery-1</code>" in body and "Ask an admin" in body
    assert "unknown" in body  # the unpriced model's cost, never $0.00
    assert ">Costs</a>" in body


def test_each_breakdown_exports_as_csv_with_unknown_left_empty(viewer_a, spent):
    def rows(by: str) -> list[dict[str, str]]:
        response = client_for(viewer_a).get("/t/acme/costs/export/", {**around_now(), "by": by})
        assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
        return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))  # type: ignore[attr-defined]

    models = {r["model"]: r["cost_usd"] for r in rows("model")}
    assert models == {"gpt-4o": "2.500000000", "mystery-1": ""}
    assert [(r["agent"], r["cost_usd"]) for r in rows("agent")] == [
        ("worker-1", "2.000000000"),
        ("worker-2", "0.500000000"),
    ]
    labels = {r["label"]: (r["cost_usd"], r["unpriced_records"]) for r in rows("label")}
    assert labels == {"team=search": ("2.000000000", "0"), "team=ads": ("0.500000000", "1")}
    assert all(r["partial"] == "true" for r in rows("model"))


def test_the_period_before_and_the_projection(viewer_a, tenant_a, agent_a, spent):
    usage_record(
        tenant_id=tenant_a.pk,
        records=[NewUsage(agent_a.pk, "gpt-4o", timezone.now() - timedelta(days=8), 800_000, 0)],  # $2.00 a week ago
    )
    body = client_for(viewer_a).get(URL, {"range": "7d"}).content.decode()
    assert "+25.0% on the period before ($2.00)" in body
    assert 'data-testid="cost-projection"' in body and "a projection" in body


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"range": "1y"}, "E10601"),
        ({"range": "custom", "start": "yesterday"}, "E10601"),
        ({"range": "custom", "start": "2026-11-20", "end": "2026-11-10"}, "E10606"),
        ({"range": "custom", "start": "2024-01-01", "end": "2026-11-10"}, "E10607"),
    ],
)
def test_a_bad_range_is_a_400_that_says_so(viewer_a, spent, params, code):
    page = client_for(viewer_a).get(URL, params)
    assert page.status_code == 400 and code in page.content.decode()
    export = client_for(viewer_a).get("/t/acme/costs/export/", {**params, "by": "model"})
    assert export.status_code == 400 and code in export.content.decode()


def test_today_and_month_to_date_are_marked_as_so_far(viewer_a, spent):
    for key in ("today", "mtd"):
        body = client_for(viewer_a).get(URL, {"range": key}).content.decode()
        assert "(so far)" in body.split('data-testid="cost-total"')[1].split("</div>")[0]


def test_an_agents_page_shows_its_costs_this_month_and_its_budget(viewer_a, agent_a, admin_a, spent):
    from audit.services import Actor
    from costs.budgets import budget_set

    budget_set(tenant_id=agent_a.tenant_id, actor=Actor(user=admin_a), name="W1", monthly_usd="4", agent_id=agent_a.pk)
    page = client_for(viewer_a).get(f"/t/acme/agents/{agent_a.pk}/").content.decode()
    card = page.split('data-testid="agent-costs"')[1].split("</section>")[0]
    assert "$2.00" in card and "<code>gpt-4o</code>" in card and "$2.50" not in card  # its own, not the tenant's
    assert "Budget “W1”: $2.00 of $4.00 (50 %)" in card


def test_the_month_end_projection_from_a_known_rate(tenant_a, agent_a, admin_a):
    from costs.selectors import projection

    price_add(
        spec=PriceSpec("m", Decimal("1"), Decimal("0"), datetime(2026, 1, 1, tzinfo=UTC)), tenant_id=None,
        actor=Actor(user=admin_a),
    )  # fmt: skip
    half = datetime(2026, 11, 16, tzinfo=UTC)  # 15 of November's 30 days gone
    usage_record(tenant_id=tenant_a.pk, records=[NewUsage(agent_a.pk, "m", half - timedelta(days=3), 3_000_000, 0)])
    assert projection(tenant_a.pk, half) == (Decimal(3), Decimal(6))


def test_the_overview_reads_its_cost_tiles_after_the_page(viewer_a, spent):
    page = client_for(viewer_a).get("/t/acme/").content.decode()
    assert 'id="overview-costs"' in page and "Reading costs…" in page
    tiles = client_for(viewer_a).get("/t/acme/", headers={"HX-Request": "true", "HX-Target": "overview-costs"})
    body = tiles.content.decode()
    assert "<html" not in body and 'hx-trigger="every 60s"' in body
    assert 'data-testid="cost-today"' in body and "$2.50" in body and 'data-testid="cost-unpriced"' in body


def test_the_chart_stacks_the_costs_of_each_model_per_step(tenant_a, agent_a, admin_a):
    from costs.selectors import by_model_over_time

    price_add(
        spec=PriceSpec("a", Decimal("1"), Decimal("0"), datetime(2026, 1, 1, tzinfo=UTC)), tenant_id=None,
        actor=Actor(user=admin_a),
    )  # fmt: skip
    price_add(
        spec=PriceSpec("b", Decimal("2"), Decimal("0"), datetime(2026, 1, 1, tzinfo=UTC)), tenant_id=None,
        actor=Actor(user=admin_a),
    )  # fmt: skip
    start = datetime(2026, 11, 10, tzinfo=UTC)
    usage_record(
        tenant_id=tenant_a.pk,
        records=[
            NewUsage(agent_a.pk, "a", start + timedelta(hours=1, minutes=5), 1_000_000, 0),  # $1 in hour 1
            NewUsage(agent_a.pk, "b", start + timedelta(hours=1, minutes=9), 1_000_000, 0),  # $2 in hour 1
            NewUsage(agent_a.pk, "b", start + timedelta(hours=2, minutes=1), 500_000, 0),  # $1 in hour 2
        ],
    )
    chart = by_model_over_time(tenant_a.pk, start, start + timedelta(hours=3))
    assert chart["x"] == [int((start + timedelta(hours=h)).timestamp()) for h in range(3)]
    assert [s["label"] for s in chart["series"]] == ["b", "a"]  # most costly first, at the bottom
    assert chart["series"][0]["values"] == [0.0, 2.0, 1.0]
    assert chart["series"][1]["values"] == [0.0, 3.0, 1.0]  # stacked: b and a


def test_the_page_reads_each_sum_of_its_range_once(viewer_a, tenant_a, spent, monkeypatch):
    from collections import Counter

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from costs import selectors

    asked: list[tuple[datetime, datetime, str, str | None]] = []
    real = selectors.sums

    def counted(tenant_id, start, end, *, by="model", agent_id=None, step=None):
        asked.append((start, end, by, step))
        return real(tenant_id, start, end, by=by, agent_id=agent_id, step=step)

    monkeypatch.setattr(selectors, "sums", counted)
    with CaptureQueriesContext(connection) as seen:
        response = client_for(viewer_a).get(URL, {"range": "7d"})
    assert response.status_code == 200
    # The range by model (the totals and the model lines) and by agent (the agent and label
    # lines) each once; the period before, the month to date and the chart have their own.
    start, end = response.context["period"].start, response.context["period"].end
    assert Counter(asked)[(start, end, "model", None)] == 1
    assert Counter(asked)[(start, end, "agent_id", None)] == 1
    assert max(Counter(asked).values()) == 1
    # And no sum over the usage or its rollups is read twice, however the selectors read them.
    sums = [
        q["sql"]
        for q in seen.captured_queries
        if '"costs_' in q["sql"] and ("SUM(" in q["sql"] or "COUNT(" in q["sql"])
    ]
    assert sums and len(sums) == len(set(sums))
    body = response.content.decode()
    assert "worker-1" in body and "team=ads" in body and "<code>gpt-4o</code>" in body


def test_the_cost_pages_live_part_is_its_budgets_with_their_rates(viewer_a, admin_a, tenant_a, agent_a, spent):
    from costs.budgets import budget_set

    budget_set(tenant_id=tenant_a.pk, actor=Actor(user=admin_a), name="Search", monthly_usd="4", selector="team=search")
    client = client_for(viewer_a)
    page = client.get(URL).content.decode()
    assert 'id="cost-budgets" data-live-part' in page and "data-live-url=" in page and "view=costs" in page
    part = client.get(URL, headers={"HX-Request": "true", "HX-Target": "cost-budgets"})
    body = part.content.decode()
    assert part.status_code == 200 and body.startswith('<div id="cost-budgets"')
    # $2.00 of $4.00, all of it in the last hour: $2.00 an hour, an hour left (or the month ends first).
    assert "$2.00/h: runs out in ~1 h 0 min at the current rate" in body or "$2.00/h: lasts the month" in body
    assert "budget-form" not in body  # the form stays put while the part is read again


def test_an_agents_costs_card_shows_every_budget_that_covers_it(viewer_a, admin_a, tenant_a, agent_a, spent):
    from costs.budgets import budget_set

    admin = Actor(user=admin_a)
    budget_set(tenant_id=tenant_a.pk, actor=admin, name="Acme", monthly_usd="100")
    budget_set(tenant_id=tenant_a.pk, actor=admin, name="Search", monthly_usd="4", selector="team=search")
    budget_set(tenant_id=tenant_a.pk, actor=admin, name="Ads", monthly_usd="4", selector="team=ads")
    budget_set(tenant_id=tenant_a.pk, actor=admin, name="Mine", monthly_usd="3", agent_id=agent_a.pk)
    url = f"/t/acme/agents/{agent_a.pk}/"
    part = client_for(viewer_a).get(url, headers={"HX-Request": "true", "HX-Target": "agent-costs"})
    body = part.content.decode()
    assert part.status_code == 200 and body.startswith('<section class="card" id="agent-costs"')
    named = [line.split("”")[0].split("“")[1] for line in body.split('data-testid="agent-budget"')[1:]]
    assert named == ["Acme", "Mine", "Search"]  # not Ads: its selector does not pick this agent
    assert "$2.00 of $3.00 (67 %), $2.00/h" in body
    assert "(the whole tenant)" in body and "(agents with team=search)" in body
