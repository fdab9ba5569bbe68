"""In Chromium: an operator watches an SDK agent's state change without reloading."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.db import connection
from l10_agent import Agent
from playwright.sync_api import Page, expect

from fleet import services
from fleet.models import Agent as AgentRow
from fleet.models import DesiredState
from tests.conftest import LiveServer, wait_for
from tests.e2e.test_journey import sign_in
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def sdk_agent(asgi_server: LiveServer, token_a: str) -> Iterator[Agent]:
    agent = Agent(asgi_server.url, token_a, "crawler-7", name="Crawler 7", labels={"team": "search"})
    assert agent.registered.wait(10)
    wait_for(lambda: agent.connected, what="the agent's control socket")
    yield agent
    agent.close(timeout=2)


def test_the_agent_list_follows_what_the_sdk_reports(page: Page, asgi_server: LiveServer, admin_a: User, sdk_agent):
    page.goto(f"{asgi_server.url}/login/")
    sign_in(page, "alice", PASSWORD)
    page.goto(f"{asgi_server.url}/t/acme/agents/")
    agent_row = page.locator("tr", has_text="Crawler 7")
    states = agent_row.locator(".state")
    expect(states).to_have_text(["Running", "Running"])
    page.evaluate("window.sameDocument = true")  # gone if the page reloads

    # From a thread of its own, as a request's view would (this thread runs Playwright's
    # event loop; the ORM is only safe here by the fixture's leave).
    agent_id = AgentRow.objects.get().pk

    def set_paused() -> None:
        try:
            services.agent_desired_state_set(agent_id=agent_id, state=DesiredState.PAUSED, actor=admin_a)
        finally:
            connection.close()

    pause = threading.Thread(target=set_paused)
    pause.start()
    pause.join(timeout=10)
    # Within a second: the socket delivers it (a heartbeat alone could take 10 s).
    wait_for(lambda: sdk_agent.observed_state == "paused", timeout=2, what="the SDK to pause")
    # No reload: the list's socket brings the row with the agent's confirmation.
    expect(states).to_have_text(["Paused", "Paused"], timeout=3_000)
    assert page.evaluate("window.sameDocument === true")
