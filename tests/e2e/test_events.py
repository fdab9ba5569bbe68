"""In Chromium: the events page's live tail shows new events at the top without a reload,
holds still while one is open and counts the ones waiting, pauses and resumes, keeps to
its filters, and stays bounded through a burst."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Page, expect

from events.services import NewEvent, emit, events_record
from fleet.models import Agent
from tests.conftest import LiveServer, UvicornThread, free_port
from tests.e2e.test_journey import sign_in
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.django_db(transaction=True)]
LIVE = 5_000  # ms: a new event must show within this, with no reload


@pytest.fixture
def server(transactional_db: None) -> Iterator[UvicornThread]:
    thread = UvicornThread(free_port())
    thread.start()
    yield thread
    thread.stop()


def note(agent: Agent, message: str, kind: str = "note.added", severity: str = "info") -> None:
    emit(agent.tenant_id, kind, agent_id=agent.pk, external_id=agent.external_id, message=message, severity=severity)


def open_events(page: Page, server: UvicornThread, query: str = "") -> None:
    base = LiveServer("127.0.0.1", server.port).url
    page.goto(f"{base}/login/")
    sign_in(page, "vera", PASSWORD)  # a viewer: every member reads the events
    page.goto(f"{base}/t/acme/events/{query}")
    expect(page.get_by_test_id("event-list")).to_have_attribute("data-tail-ready", "true", timeout=LIVE)
    page.evaluate("window.sameDocument = true")  # gone if the page reloads


def test_the_tail_shows_new_events_and_holds_still_while_one_is_open(
    page: Page, server: UvicornThread, viewer_a: User, agent_a: Agent
):
    open_events(page, server)
    rows = page.locator("#event-list > li")
    expect(page.get_by_test_id("no-events")).to_be_visible()

    note(agent_a, "first live event")
    expect(rows.first).to_contain_text("first live event", timeout=LIVE)
    expect(rows.first).to_contain_text("worker-1")
    expect(page.get_by_test_id("no-events")).to_have_count(0)

    # Open it: its detail is read (with the link to its agent) and the list holds still.
    rows.first.locator("summary").click()
    expect(rows.first.get_by_test_id("event-agent")).to_be_visible(timeout=LIVE)
    expect(page.get_by_test_id("tail-state")).to_have_text("Holding still: an event is open")
    for n in range(12):
        note(agent_a, f"waiting {n}")
    news = page.get_by_test_id("tail-news")
    expect(news).to_contain_text("12 new events", timeout=LIVE)
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("first live event")

    # Close it: the twelve come in, newest on top, and the word goes.
    rows.first.locator("summary").click()
    expect(rows).to_have_count(13, timeout=LIVE)
    expect(rows.first).to_contain_text("waiting 11")
    expect(news).to_be_hidden()

    # Paused, it counts; resumed, it shows.
    page.get_by_test_id("tail-toggle").click()
    expect(page.get_by_test_id("tail-state")).to_have_text("Paused")
    note(agent_a, "while paused")
    expect(news).to_contain_text("1 new event", timeout=LIVE)
    page.get_by_test_id("tail-toggle").click()
    expect(rows.first).to_contain_text("while paused", timeout=LIVE)
    assert page.evaluate("window.sameDocument === true")


def test_the_tail_keeps_to_the_pages_filters(page: Page, server: UvicornThread, viewer_a: User, agent_a: Agent):
    open_events(page, server, "?severity=error")
    rows = page.locator("#event-list > li")
    note(agent_a, "only info")
    note(agent_a, "a failure", kind="task.failed", severity="error")
    expect(rows.first).to_contain_text("a failure", timeout=LIVE)
    expect(rows).to_have_count(1)


def test_a_burst_keeps_the_list_bounded(page: Page, server: UvicornThread, viewer_a: User, agent_a: Agent):
    open_events(page, server)
    rows = page.locator("#event-list > li")

    def burst(name: str, count: int) -> list[NewEvent]:
        now = timezone.now()
        return [
            NewEvent(type="task.completed", occurred_at=now, agent_id=agent_a.pk, message=f"{name} {n}")
            for n in range(count)
        ]

    for batch in range(8):  # 400 events in quick batches: the list keeps the newest 200
        events_record(tenant_id=agent_a.tenant_id, events=burst(f"quick-{batch}", 50))
    expect(rows.first).to_contain_text("quick-7 49", timeout=LIVE)
    expect(rows).to_have_count(200)

    # One batch of 600: its newest 100 come, and a line says how many more went by.
    events_record(tenant_id=agent_a.tenant_id, events=burst("big", 600))
    expect(rows.first).to_contain_text("big 599", timeout=LIVE)
    expect(rows.nth(99)).to_contain_text("big 500")
    expect(rows.nth(100)).to_contain_text("500 more events arrived here")
    expect(rows).to_have_count(200)
