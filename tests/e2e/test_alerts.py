"""In Chromium: an alert fires while the on-call page is open and shows without a reload,
the header badge counts it on every page, an operator acknowledges it and the badge drops."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Page, expect

from alerts.evaluation import evaluate_tenant
from alerts.models import AlertRule
from fleet.models import Agent, MetricMinute
from tests.conftest import LiveServer, UvicornThread, free_port
from tests.dashboard.conftest import live_agent
from tests.e2e.test_journey import sign_in
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.django_db(transaction=True)]
LIVE = 5_000  # ms


@pytest.fixture
def server(transactional_db: None) -> Iterator[UvicornThread]:
    thread = UvicornThread(free_port())
    thread.start()
    yield thread
    thread.stop()


def hot(agent: Agent, cpu: float) -> None:
    """The agent's current minute reports ``cpu``."""
    minute = timezone.now().replace(second=0, microsecond=0)
    MetricMinute.objects.update_or_create(
        agent=agent, minute=minute,
        defaults={"tenant_id": agent.tenant_id, "samples": 6, "cpu_sum": 6 * cpu, "cpu_max": cpu},
    )  # fmt: skip


def test_an_alert_shows_live_and_an_operator_acknowledges_it(
    page: Page, server: UvicornThread, operator_a: User, tenant_a
):
    agent = live_agent(tenant_a, "crawler-1", cpu=20.0)
    now = timezone.now()
    AlertRule.objects.create(
        tenant=tenant_a, name="CPU hot", metric="cpu_percent", threshold=90, window_seconds=120, created_at=now,
        updated_at=now, severity="critical",
    )  # fmt: skip
    base = LiveServer("127.0.0.1", server.port).url
    page.goto(f"{base}/login/")
    sign_in(page, "oscar", PASSWORD)
    page.goto(f"{base}/t/acme/alerts/")
    expect(page.get_by_test_id("no-alerts")).to_be_visible()
    badge = page.get_by_test_id("alert-badge")
    expect(badge).to_be_hidden()
    page.evaluate("window.sameDocument = true")

    hot(agent, 97.0)
    evaluate_tenant(tenant_a.pk)  # what the beat's task does every few seconds
    row = page.locator("#alert-rows tr", has_text="CPU hot")
    expect(row).to_contain_text("Firing", timeout=LIVE)
    expect(badge).to_have_text("1")
    assert page.evaluate("window.sameDocument === true")

    row.get_by_placeholder("comment (optional)").fill("on it")
    row.get_by_test_id("acknowledge").click()
    expect(page.locator(".msg-success")).to_contain_text("Acknowledged")
    expect(page.get_by_test_id("alert-badge")).to_be_hidden()
    expect(page.locator("#alert-rows tr", has_text="CPU hot")).to_contain_text("acknowledged by oscar")
