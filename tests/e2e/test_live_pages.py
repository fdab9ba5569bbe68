"""In Chromium: simulated agents report over the API, and the open overview, list and
detail follow without a reload; when the server goes away the page says so, and when it
comes back the page catches up on what it missed."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from django.utils import timezone
from playwright.sync_api import Page, expect

from fleet import services as fleet_services
from fleet.models import Agent, DesiredState, MetricMinute, ObservedState
from tests.conftest import LiveServer, UvicornThread, free_port
from tests.dashboard.conftest import live_agent
from tests.e2e.test_journey import sign_in
from tests.factories import PASSWORD
from tests.realtime.conftest import settings_with

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.django_db(transaction=True)]
LIVE = 3_000  # ms: a change must show within this, with no reload


@pytest.fixture(autouse=True)
def quick_overview() -> Iterator[None]:
    """Open overviews are updated every second (``L10_LIVE_OVERVIEW_INTERVAL``)."""
    with override_settings(L10=settings_with(L10_LIVE_OVERVIEW_INTERVAL="1")):
        yield


@pytest.fixture
def server(transactional_db: None) -> Iterator[UvicornThread]:
    thread = UvicornThread(free_port())
    thread.start()
    yield thread
    thread.stop()


@pytest.fixture
def crawlers(tenant_a) -> list[Agent]:
    return [live_agent(tenant_a, f"crawler-{n}", cpu=10.0 * n) for n in (1, 2, 3)]


def report(server: UvicornThread, token: str, external_id: str, **body: object) -> None:
    """What a simulated agent sends: a heartbeat over the ingest API."""
    response = httpx.post(
        f"http://127.0.0.1:{server.port}/api/v1/ingest/agents/{external_id}/heartbeat",
        json={"state": "running", **body},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text


def test_open_pages_follow_the_fleet_and_catch_up_after_an_outage(
    page: Page, server: UvicornThread, operator_a: User, token_a: str, crawlers: list[Agent]
):
    base = LiveServer("127.0.0.1", server.port).url
    page.goto(f"{base}/login/")
    sign_in(page, "oscar", PASSWORD)  # an operator: the list has selection boxes

    # The overview: an agent pauses; the tiles count it.
    expect(page.get_by_test_id("count-paused")).to_have_text("0")
    page.evaluate("window.sameDocument = true")  # gone if the page reloads
    report(server, token_a, "crawler-1", state="paused")
    expect(page.get_by_test_id("count-paused")).to_have_text("1", timeout=LIVE)
    expect(page.get_by_test_id("count-running")).to_have_text("2")
    assert page.evaluate("window.sameDocument === true")

    # The list: another agent's row changes state and figures; a ticked box stays ticked.
    page.goto(f"{base}/t/acme/agents/")
    row = page.locator("tr", has_text="Crawler 2")
    expect(row.locator(".state")).to_have_text(["Running", "Running"])
    row.get_by_role("checkbox").check()
    page.evaluate("window.sameDocument = true")
    report(server, token_a, "crawler-2", state="error", metrics={"cpu_percent": 93.5})
    expect(row.locator(".state").nth(1)).to_have_text("Error", timeout=LIVE)
    expect(row).to_contain_text("93.5")
    expect(row.get_by_role("checkbox")).to_be_checked()
    assert page.evaluate("window.sameDocument === true")

    # The detail: the agent's figures move.
    agent = crawlers[2]
    page.goto(f"{base}/t/acme/agents/{agent.pk}/")
    expect(page.get_by_test_id("observed-state")).to_have_text("Running")
    page.evaluate("window.sameDocument = true")
    report(server, token_a, "crawler-3", metrics={"cpu_percent": 71.4, "memory_mb": 2048})
    expect(page.locator("#agent-summary")).to_contain_text("71.4", timeout=LIVE)
    expect(page.locator("#agent-summary")).to_contain_text("2,048")

    # The server goes away: the page says live updates are paused.
    status = page.get_by_test_id("live-status")
    expect(status).to_be_hidden()
    server.stop()
    expect(status).to_have_text("Live updates paused — reconnecting…", timeout=LIVE)
    # Meanwhile the agent pauses; no server is there to pass it on.
    fleet_services.agent_state_report(agent=agent, state=ObservedState.PAUSED)
    # The server comes back: the page reconnects, sees it missed events, and reloads its part.
    server.start()
    expect(page.get_by_test_id("observed-state")).to_have_text("Paused", timeout=20_000)
    expect(status).to_be_hidden()
    assert page.evaluate("window.sameDocument === true")


def test_the_overview_tiles_and_charts_move_with_the_fleet_without_a_reload(
    page: Page, server: UvicornThread, viewer_a: User, token_a: str, tenant_a, crawlers: list[Agent]
):
    # Whole minutes already reported: the tokens chart has a line; its last whole point says
    # 600 a minute.
    now = timezone.now().replace(second=0, microsecond=0)
    for back in range(1, 6):
        MetricMinute.objects.create(
            agent=crawlers[0], tenant=tenant_a, minute=now - timedelta(minutes=back), samples=6, cpu_sum=60.0,
            cpu_max=10.0, tokens=600, requests=60,
        )  # fmt: skip
    base = LiveServer("127.0.0.1", server.port).url
    page.goto(f"{base}/login/")
    sign_in(page, "vera", PASSWORD)
    page.evaluate("window.sameDocument = true")  # gone if the page reloads
    as_of = page.get_by_test_id("overview-as-of")
    expect(as_of).to_contain_text("Live ·", timeout=LIVE)
    expect(as_of).to_contain_text(re.compile(r"Figures read \d+ s ago"))

    # Tiles: an agent reports a CPU no agent had; the top CPU list shows it.
    top = page.locator(".tops")
    expect(top).not_to_contain_text("97.3")
    report(server, token_a, "crawler-2", metrics={"cpu_percent": 97.3})
    expect(top).to_contain_text("97.3", timeout=LIVE)

    # Charts: the agents keep reporting tokens; the minute in progress appears at the end of
    # the tokens chart, dashed, its legend reading a rate "so far" when pointed at.
    chart = page.locator('.chart[data-chart="chart-tokens"]')
    legend = chart.locator(".u-legend .u-series").nth(1)
    deadline = time.monotonic() + 75  # the minute in progress shows once a sixth of it has passed
    shown = ""
    while time.monotonic() < deadline:
        report(server, token_a, "crawler-1", metrics={"tokens": 50})
        box = chart.locator(".u-over").bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] - 1, box["y"] + box["height"] / 2)
        shown = legend.inner_text()
        if "so far" in shown:
            break
        page.mouse.move(0, 0)
        page.wait_for_timeout(500)
    assert "so far" in shown, shown
    # At rest the legend shows the last whole minute, 600 tokens (and whatever crawler-1
    # reported in it), never the smaller minute in progress as though it were whole.
    page.mouse.move(0, 0)
    expect(legend).not_to_contain_text("so far")
    expect(legend).not_to_contain_text("—")
    assert page.evaluate("window.sameDocument === true")


def test_an_agents_events_and_control_cards_follow_it_without_a_reload(
    page: Page, server: UvicornThread, operator_a: User, token_a: str, crawlers: list[Agent]
):
    agent = crawlers[0]
    base = LiveServer("127.0.0.1", server.port).url
    page.goto(f"{base}/login/")
    sign_in(page, "oscar", PASSWORD)
    page.goto(f"{base}/t/acme/agents/{agent.pk}/")
    events, controls = page.locator("#agent-events"), page.locator("#agent-controls")
    expect(events).to_contain_text("No warnings or errors among this agent's events")
    expect(controls).to_contain_text("No control actions yet")
    page.evaluate("window.sameDocument = true")

    # The agent reports a failure; the card, showing warnings and errors, lists it.
    response = httpx.post(
        f"{base}/api/v1/ingest/events",
        json={"events": [{"external_id": agent.external_id, "type": "task.failed", "severity": "error",
                          "message": "upstream timed out", "at": timezone.now().isoformat()}]},
        headers={"Authorization": f"Bearer {token_a}"},
        timeout=10,
    )  # fmt: skip
    assert response.status_code == 200, response.text
    expect(events.get_by_test_id("agent-events")).to_contain_text("upstream timed out", timeout=LIVE)
    expect(events).to_contain_text("Error")

    # Someone else pauses it (another tab, the API): the control actions card says so.
    fleet_services.agent_desired_state_set(agent_id=agent.pk, state=DesiredState.PAUSED, actor=operator_a)
    expect(controls).to_contain_text("oscar", timeout=LIVE)
    expect(controls).not_to_contain_text("No control actions yet")
    assert page.evaluate("window.sameDocument === true")
