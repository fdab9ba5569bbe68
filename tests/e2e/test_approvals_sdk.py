"""In Chromium, with a running SDK agent: the agent asks, the open inbox shows the request
live, a person approves (or rejects) it, and the agent's ``request_approval`` returns the
decision within a second; a request that times out returns its ``on_timeout``; and a
request that needs two approvers returns only after the second person approves."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from l10_agent import Agent
from playwright.sync_api import Browser, Page, expect

from approvals.services import expire_due, rule_add
from audit.services import Actor
from tests.conftest import LiveServer
from tests.e2e.test_approvals import LIVE, open_inbox, pending
from tests.sdk.test_approvals import Asking, asked, ready

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.django_db(transaction=True)]
WITHIN = 1.0  # s from the click to the agent's call returning


@pytest.fixture
def asker(asgi_server: LiveServer, token_a: str):
    # A minute between heartbeats: a decision within a second can only have come over the socket.
    agent = Agent(asgi_server.url, token_a, "asker", heartbeat_interval=60)
    ready(agent)
    yield agent
    agent.close(timeout=2)


def test_the_agent_asks_the_inbox_shows_it_live_and_an_approval_returns_within_a_second(
    page: Page, asgi_server: LiveServer, operator_a: User, asker: Agent
):
    open_inbox(page, asgi_server, "oscar")
    call = Asking(lambda: asker.request_approval("deploy.prod", "Deploy build 42", {"build": 42}, key="b42"))
    request = pending(page, "Deploy build 42")
    expect(request).to_be_visible(timeout=LIVE)  # told over the hub, no reload
    expect(request).to_contain_text("asker")
    request.get_by_label(re.compile("^Comment")).fill("go")
    request.get_by_role("button", name="Approve").click()
    clicked = time.monotonic()
    decision = call.result(within=WITHIN)
    assert time.monotonic() - clicked <= WITHIN
    assert (decision.approved, decision.decided_by, decision.comment, decision.state) == (
        True,
        "oscar",
        "go",
        "approved",
    )
    expect(page.locator(".msg-success")).to_contain_text("Approved “Deploy build 42”")


def test_a_rejection_returns_with_its_comment(page: Page, asgi_server: LiveServer, operator_a: User, asker: Agent):
    open_inbox(page, asgi_server, "oscar")
    call = Asking(lambda: asker.request_approval("db.delete", "Drop the staging tables", key="drop"))
    request = pending(page, "Drop the staging tables")
    expect(request).to_be_visible(timeout=LIVE)
    request.get_by_label(re.compile("^Comment")).fill("not before the backup")
    request.get_by_role("button", name="Reject").click()
    decision = call.result(within=WITHIN)
    assert (decision.approved, decision.decided_by, decision.comment) == (False, "oscar", "not before the backup")


def test_a_request_nobody_decides_returns_its_on_timeout(
    page: Page, asgi_server: LiveServer, operator_a: User, asker: Agent
):
    call = Asking(
        lambda: asker.request_approval(
            "refund.issue", "Refund order 7", key="refund-7", timeout=timedelta(seconds=10), on_timeout="approve"
        )
    )
    request = asked("asker")
    open_inbox(page, asgi_server, "oscar")
    page.goto(f"{asgi_server.url}/t/acme/approvals/{request.pk}/")
    assert expire_due(now=timezone.now() + timedelta(seconds=11)) == 1  # the expiry task's run, past the timeout
    decision = call.result(within=5)
    assert (decision.approved, decision.state, decision.decided_by) == (True, "expired", "timeout")
    expect(page.get_by_test_id("approval-outcome")).to_contain_text("approved by its timeout", timeout=LIVE)


def test_two_approvers_the_agent_waits_for_the_second(
    page: Page, chromium: Browser, asgi_server: LiveServer, operator_a: User, admin_a: User, asker: Agent
):
    rule_add(tenant_id=admin_a.memberships.get().tenant_id, actor=Actor(user=admin_a), action="deploy.*",
             needs_approvers=2)  # fmt: skip
    open_inbox(page, asgi_server, "oscar")
    call = Asking(lambda: asker.request_approval("deploy.prod", "Deploy build 43", key="b43"))
    request = pending(page, "Deploy build 43")
    expect(request).to_be_visible(timeout=LIVE)
    request.get_by_role("button", name="Approve").click()
    expect(page.locator(".msg-success")).to_contain_text("is the first of two")
    assert not call.done.wait(0.5)  # one approval of two: the agent still waits

    context = chromium.new_context(viewport={"width": 1366, "height": 900})
    try:
        alice = context.new_page()
        open_inbox(alice, asgi_server, "alice")
        pending(alice, "Deploy build 43").get_by_role("button", name="Approve").click()
        decision = call.result(within=WITHIN)
    finally:
        context.close()
    assert (decision.approved, decision.decided_by) == (True, "alice")
