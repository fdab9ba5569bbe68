"""In Chromium: overview → agent list (filter, sort) → agent detail with its charts drawn."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Page, expect

from fleet.models import MetricMinute
from tests.conftest import LiveServer
from tests.dashboard.conftest import live_agent
from tests.e2e.test_journey import sign_in
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def fleet(tenant_a, viewer_a):
    agents = [
        live_agent(tenant_a, "crawler-1", cpu=22.0, labels={"team": "search"}),
        live_agent(tenant_a, "crawler-2", cpu=64.0, labels={"team": "search"}),
        live_agent(tenant_a, "bidder-1", cpu=91.0, labels={"team": "ads"}),
    ]
    now = timezone.now().replace(second=0, microsecond=0)
    for agent in agents:
        MetricMinute.objects.bulk_create(
            MetricMinute(
                agent=agent, tenant=tenant_a, minute=now - timedelta(minutes=m), samples=6,
                cpu_sum=6 * (agent.cpu_percent or 0) * (0.8 + (m % 5) / 10), cpu_max=agent.cpu_percent or 0,
                memory_sum=6 * 500.0, memory_max=520.0, tokens=1200 + m, requests=12, errors=m % 3, latency_p95_ms=180.0 + m,
            )
            for m in range(1, 50)
        )  # fmt: skip
    return agents


def test_overview_then_the_list_then_an_agent_with_its_charts(
    page: Page, asgi_server: LiveServer, viewer_a: User, fleet
):
    page.goto(f"{asgi_server.url}/login/")
    sign_in(page, "vera", PASSWORD)

    # Overview: counts, top CPU, fleet charts drawn.
    expect(page).to_have_url(f"{asgi_server.url}/t/acme/")
    expect(page.get_by_test_id("total-agents")).to_have_text("3")
    expect(page.get_by_test_id("count-running")).to_have_text("3")
    top_cpu = page.locator(".card.top", has_text="Top CPU").locator("td:first-child")
    expect(top_cpu).to_have_text(["Bidder 1", "Crawler 2", "Crawler 1"])
    expect(page.locator("#overview-charts .chart[data-drawn='true'] canvas")).to_have_count(5)
    # Another range swaps in its charts without a reload.
    page.get_by_role("link", name="6 hours").click()
    expect(page).to_have_url(re.compile(r"\?range=6h$"))
    expect(page.locator("#overview-charts h2")).to_have_text("Fleet over the last 6 hours")
    expect(page.locator("#overview-charts .chart[data-drawn='true']")).to_have_count(5)

    # The list: filter by label, then sort by CPU descending.
    page.get_by_role("banner").get_by_role("link", name="Agents").click()
    names = page.get_by_test_id("agent-table").locator("tbody tr td:nth-child(2)")
    expect(names).to_have_text(["Bidder 1", "Crawler 1", "Crawler 2"])
    page.get_by_label("Labels").fill("team=search")
    expect(names).to_have_text(["Crawler 1", "Crawler 2"])
    expect(page).to_have_url(re.compile(r"labels=team%3Dsearch"))
    page.get_by_role("link", name="CPU %").click()
    page.get_by_role("link", name=re.compile(r"CPU %")).click()  # again: descending
    expect(page).to_have_url(re.compile(r"sort=-cpu"))
    expect(names).to_have_text(["Crawler 2", "Crawler 1"])

    # The detail: state, tiles and charts over the chosen range.
    page.get_by_role("link", name="Crawler 2").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Crawler 2")
    expect(page.get_by_test_id("observed-state")).to_have_text("Running")
    expect(page.locator("#agent-charts .chart[data-drawn='true'] canvas")).to_have_count(5)
    page.get_by_role("link", name="15 min").click()
    expect(page.locator("#agent-charts h2")).to_have_text("Resources over the last 15 min")
    expect(page.locator("#agent-charts .chart[data-drawn='true'] canvas")).to_have_count(5)


def test_ages_advance_on_an_open_page_and_idle_agents_show_their_last_figures(
    page: Page, asgi_server: LiveServer, viewer_a: User, tenant_a
):
    now = timezone.now()
    live_agent(tenant_a, "crawler-1", cpu=22.0, last_heartbeat_at=now - timedelta(seconds=10))
    stopped = live_agent(
        tenant_a, "bidder-1", cpu=91.0, observed="stopped", desired="stopped", metrics_at=now - timedelta(minutes=3)
    )
    page.goto(f"{asgi_server.url}/login/")
    sign_in(page, "vera", PASSWORD)
    page.goto(f"{asgi_server.url}/t/acme/agents/")
    row = page.get_by_test_id("agent-table").locator("tr", has_text="Crawler 1")
    age = row.locator("time[data-ago]").first
    expect(age).to_have_text(re.compile(r"^\d+ s ago$"))
    first = int(age.inner_text().split()[0])
    # No reload, no request: the browser tells the age again from the element's own time.
    page.wait_for_function(
        "([el, first]) => parseInt(el.textContent) > first", arg=[age.element_handle(), first], timeout=10_000
    )

    # A stopped agent's figures are its last ones, greyed, with when they were reported.
    idle = page.get_by_test_id("agent-table").locator("tr", has_text="Bidder 1").locator("td.stale")
    expect(idle).to_have_count(4)
    expect(idle.first).to_have_attribute("title", re.compile(r"^Last reported \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"))
    assert idle.first.evaluate("el => getComputedStyle(el).fontStyle") == "italic"
    page.goto(f"{asgi_server.url}/t/acme/agents/{stopped.pk}/")
    expect(page.get_by_test_id("metrics-stale")).to_have_text(
        re.compile(r"^Last reported 3 min ago: the agent is stopped\. These are not current figures\.$")
    )


def test_the_charts_of_a_panel_share_one_cursor_and_rest_on_their_latest_value(
    page: Page, asgi_server: LiveServer, viewer_a: User, fleet
):
    page.goto(f"{asgi_server.url}/login/")
    sign_in(page, "vera", PASSWORD)
    charts = page.locator("#overview-charts .chart[data-drawn='true']")
    expect(charts).to_have_count(5)
    cpu, memory = charts.nth(0), charts.nth(1)

    def legend(chart, row: int):  # row 0: the time; 1: the first line
        return chart.locator(".u-legend .u-series").nth(row).locator(".u-value")

    # At rest: the latest minute that is over, with its values (the minute in progress is
    # left out, so the last point is not a gap or a drop).
    expect(legend(cpu, 1)).not_to_have_text("—")
    expect(legend(memory, 1)).not_to_have_text("—")
    resting = legend(memory, 0).inner_text()
    assert legend(cpu, 0).inner_text() == resting
    # Hovering one chart moves the cursor of the others to the same minute.
    box = cpu.locator(".u-over").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
    expect(legend(cpu, 0)).not_to_have_text(resting)
    expect(legend(memory, 0)).to_have_text(legend(cpu, 0).inner_text())


def test_the_agent_page_leads_with_warnings_and_errors_and_shows_all_events_on_a_click(
    page: Page, asgi_server: LiveServer, viewer_a: User, tenant_a
):
    from events.models import Event

    agent = live_agent(tenant_a, "crawler-1", cpu=22.0)
    now = timezone.now()
    for n in range(12):
        Event.objects.create(
            tenant=tenant_a, agent=agent, type="task.completed", message="done", occurred_at=now - timedelta(seconds=n)
        )
    Event.objects.create(
        tenant=tenant_a, agent=agent, type="task.failed", severity="error", message="upstream timeout",
        occurred_at=now - timedelta(minutes=5),
    )  # fmt: skip
    page.goto(f"{asgi_server.url}/login/")
    sign_in(page, "vera", PASSWORD)
    page.goto(f"{asgi_server.url}/t/acme/agents/{agent.pk}/")
    events = page.get_by_test_id("agent-events").locator("tbody tr")
    expect(events).to_have_count(1)
    expect(events.first).to_contain_text("upstream timeout")
    page.evaluate("window.sameDocument = true")
    page.get_by_role("navigation", name="Events shown").get_by_role("link", name="All").click()
    expect(events).to_have_count(13)
    expect(page).to_have_url(re.compile(r"\?events=all$"))
    assert page.evaluate("window.sameDocument === true")  # swapped in, not reloaded
