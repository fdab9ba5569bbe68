"""In Chromium: an operator pauses a running SDK agent from its page; the agent stops
starting tasks and the page shows the confirmation; then resumes it."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from l10_agent import Agent
from playwright.sync_api import Page, expect

from audit.models import AuditEntry
from fleet.models import Agent as AgentRow
from tests.conftest import LiveServer, wait_for
from tests.e2e.test_journey import sign_in
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def sdk_agent(asgi_server: LiveServer, token_a: str) -> Iterator[Agent]:
    agent = Agent(asgi_server.url, token_a, "crawler-7", name="Crawler 7")
    assert agent.registered.wait(10)
    wait_for(lambda: agent.connected, what="the agent's control socket")
    yield agent
    agent.close(timeout=2)


def test_pause_from_the_page_reaches_the_agent_and_is_confirmed(
    page: Page, asgi_server: LiveServer, operator_a: User, sdk_agent: Agent
):
    page.goto(f"{asgi_server.url}/login/")
    sign_in(page, "oscar", PASSWORD)
    row = AgentRow.objects.get()
    page.goto(f"{asgi_server.url}/t/acme/agents/{row.pk}/")
    actions = page.get_by_test_id("agent-actions")
    expect(actions.get_by_role("button", name="Emergency stop…")).to_have_count(0)  # an operator's page

    actions.get_by_role("button", name="Pause…").click()
    dialog = page.get_by_role("dialog", name="Pause")
    dialog.get_by_label("Reason (optional)").fill("deploying a fix")
    dialog.get_by_role("button", name="Pause").click()
    # Within two seconds of the click (the heartbeat is a minute away): the socket carried it.
    expect(page.get_by_test_id("receipt-status")).to_have_text("Paused (confirmed)", timeout=2_000)
    expect(page.get_by_test_id("observed-state")).to_have_text("Paused")

    # The agent starts no new task while paused.
    assert sdk_agent.state == "paused"
    started = threading.Event()

    def work() -> None:
        try:
            with sdk_agent.task("crawl", timeout=1.0):
                started.set()
        except TimeoutError:
            pass

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(timeout=5)
    assert not started.is_set()

    entry = AuditEntry.objects.get(resource_type="agent")
    assert (entry.action, entry.outcome, entry.actor_label, entry.reason) == (
        "agent.pause",
        "success",
        "oscar",
        "deploying a fix",
    )

    # Resume: the agent takes tasks again.
    page.get_by_test_id("agent-actions").get_by_role("button", name="Resume…").click()
    page.get_by_role("dialog", name="Resume").get_by_role("button", name="Resume").click()
    expect(page.get_by_test_id("receipt-status")).to_have_text("Running (confirmed)", timeout=2_000)
    with sdk_agent.task("crawl", timeout=2.0):
        pass


def test_a_refused_quota_keeps_its_dialog_open_with_the_input_and_the_reason(
    page: Page, asgi_server: LiveServer, admin_a: User, agent_a
):
    page.goto(f"{asgi_server.url}/login/")
    sign_in(page, "alice", PASSWORD)
    page.goto(f"{asgi_server.url}/t/acme/agents/{agent_a.pk}/")
    page.get_by_test_id("agent-actions").get_by_role("button", name="Set a quota…").click()
    dialog = page.get_by_role("dialog", name=f"Set a quota: {agent_a.name}")
    dialog.get_by_label("Per").select_option("month")
    dialog.get_by_label("Limit").fill("lots")
    dialog.get_by_label("Reason (optional)").fill("budget review")
    dialog.get_by_role("button", name="Set a quota").click()

    # Refused by the server: the same dialog is open again, as it was filled, saying why.
    dialog = page.get_by_role("dialog", name=f"Set a quota: {agent_a.name}")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("alert")).to_contain_text("E10303")
    expect(dialog.get_by_label("Limit")).to_have_value("lots")
    expect(dialog.get_by_label("Per")).to_have_value("month")
    expect(dialog.get_by_label("Reason (optional)")).to_have_value("budget review")
    dialog.get_by_label("Limit").fill("5000")
    dialog.get_by_role("button", name="Set a quota").click()
    expect(page.locator(".messages")).to_contain_text("New limit sent to the agent.")
    expect(page.locator("dialog[open]")).to_have_count(0)
    agent_a.refresh_from_db()
    assert agent_a.quotas == {"api_calls": {"month": 5000}}
