"""End to end, as in production: a real Celery worker with beat on Redis evaluates the
rules and sends the notifications. An SDK agent's CPU goes high; the alert fires; a local
receiver gets the signed webhook; the open browser shows the alert without a reload; an
operator acknowledges it in Chromium and the badge goes; "Pause agent" from the alert
pauses the SDK agent, which confirms."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from l10_agent import Agent
from playwright.sync_api import Page, expect

from alerts.models import AlertRule, NotificationTarget
from tests.alerts.test_notify import SECRET, Receiver
from tests.conftest import LiveServer, celery_worker, wait_for
from tests.e2e.test_journey import sign_in
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
SEEN = 20_000  # ms: a few evaluation intervals (1 s here) and the worker's start


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


@pytest.fixture
def hot_agent(asgi_server: LiveServer, token_a: str) -> Iterator[Agent]:
    agent = Agent(asgi_server.url, token_a, "crawler-7", name="Crawler 7", heartbeat_interval=0.5)
    assert agent.registered.wait(10)
    wait_for(lambda: agent.connected, what="the agent's control socket")
    yield agent
    agent.close(timeout=2)


def test_a_hot_agent_is_alerted_notified_acknowledged_and_paused_from_its_alert(
    page: Page, asgi_server: LiveServer, operator_a: User, tenant_a, hot_agent: Agent, receiver: Receiver,
    tmp_path: Path,
):  # fmt: skip
    now = timezone.now()
    rule = AlertRule.objects.create(
        tenant=tenant_a, name="CPU hot", metric="cpu_percent", threshold=90, window_seconds=60, created_at=now,
        updated_at=now, severity="critical",
    )  # fmt: skip
    rule.targets.add(
        NotificationTarget.objects.create(
            tenant=tenant_a, name="pager", kind="webhook", url=receiver.url, secret=SECRET, created_at=now
        )
    )
    page.goto(f"{asgi_server.url}/login/")
    sign_in(page, "oscar", PASSWORD)
    page.goto(f"{asgi_server.url}/t/acme/alerts/")
    expect(page.get_by_test_id("no-alerts")).to_be_visible()
    page.evaluate("window.sameDocument = true")

    with celery_worker(tmp_path, L10_ALERT_EVAL_INTERVAL="1", L10_WEBHOOK_ALLOW_PRIVATE="1"):
        # 1. The agent's CPU goes high, report after report.
        deadline = time.monotonic() + SEEN / 1000
        while not receiver.calls and time.monotonic() < deadline:
            hot_agent.record_metrics(cpu_percent=99.0)
            time.sleep(0.25)
        # 2–3. The alert fired, and the receiver got a signed message naming the agent.
        assert receiver.calls, "no webhook within the deadline"
        message = receiver.calls[0]
        assert message["signed"] and message["body"]["kind"] == "firing"
        assert [a["agent"]["external_id"] for a in message["body"]["alerts"]] == ["crawler-7"]

        # 4. The open page shows it, no reload; the badge counts it.
        row = page.locator("#alert-rows tr", has_text="CPU hot")
        expect(row).to_contain_text("Firing", timeout=SEEN)
        expect(page.get_by_test_id("alert-badge")).to_have_text("1")
        assert page.evaluate("window.sameDocument === true")

        # 5–6. An operator acknowledges it; the badge goes.
        row.get_by_test_id("acknowledge").click()
        expect(page.get_by_test_id("alert-badge")).to_be_hidden()
        expect(page.locator("#alert-rows tr", has_text="CPU hot")).to_contain_text("acknowledged by oscar")

        # 7. Pause from the alert: the SDK agent pauses, and confirms.
        page.locator("#alert-rows tr", has_text="CPU hot").get_by_test_id("pause-from-alert").click()
        page.get_by_role("dialog", name=re.compile(r"^Pause Crawler 7\?")).get_by_role(
            "button", name="Pause the agent"
        ).click()
        expect(page.locator(".msg-success")).to_contain_text("is pausing")
        wait_for(lambda: hot_agent.observed_state == "paused", timeout=10, what="the SDK agent to pause")
        assert hot_agent.state == "paused"
