"""In Chromium: simulated agents report over the API, and the open overview, list and
detail follow without a reload; when the server goes away the page says so, and when it
comes back the page catches up on what it missed."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from fleet import services as fleet_services
from fleet.models import Agent, ObservedState
from tests.conftest import LiveServer, UvicornThread, free_port
from tests.dashboard.conftest import live_agent
from tests.e2e.test_journey import sign_in
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.django_db(transaction=True)]
LIVE = 3_000  # ms: a change must show within this, with no reload


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
