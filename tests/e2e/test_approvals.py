"""In Chromium: an agent's request appears in the open inbox without a reload and in the
header's count; an operator approves it with a comment and it moves to the history; a
comment being typed survives news arriving; two approvers; a request that times out."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from approvals.models import ApprovalRequest, State
from approvals.services import NewRequest, expire_due, request_create, rule_add
from audit.services import Actor
from tests.conftest import LiveServer
from tests.e2e.test_journey import sign_in
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
LIVE = 5_000  # ms


def ask(agent, summary: str, **extra) -> ApprovalRequest:
    return request_create(agent=agent, new=NewRequest("email.send", summary, **extra))[0]


def open_inbox(page: Page, server: LiveServer, username: str) -> None:
    page.goto(f"{server.url}/login/")
    sign_in(page, username, PASSWORD)
    page.goto(f"{server.url}/t/acme/approvals/")
    expect(page.locator("body.live-on")).to_have_count(1)  # the page's socket is open


def pending(page: Page, summary: str):
    return page.get_by_test_id("approvals-pending").get_by_test_id("approval").filter(has_text=summary)


def test_a_request_appears_live_and_an_operator_approves_it_with_a_comment(
    page: Page, asgi_server: LiveServer, operator_a: User, agent_a
):
    open_inbox(page, asgi_server, "oscar")
    expect(page.get_by_test_id("no-pending")).to_be_visible()
    badge = page.get_by_test_id("approval-badge")
    expect(badge).to_be_hidden()
    page.evaluate("window.sameDocument = true")

    ask(agent_a, "Mail 40 customers about the outage", details={"before": "retries: 3", "after": "retries: 5"})
    request = pending(page, "Mail 40 customers")
    expect(request).to_be_visible(timeout=LIVE)
    expect(badge).to_have_text("1")
    expect(request.locator(".diff-add")).to_have_text("+retries: 5")
    assert page.evaluate("window.sameDocument === true")

    request.get_by_label(re.compile("^Comment")).fill("go ahead, it is quiet now")
    request.get_by_role("button", name="Approve").click()
    expect(page.locator(".msg-success")).to_contain_text("Approved “Mail 40 customers about the outage”")
    expect(page.get_by_test_id("no-pending")).to_be_visible()
    row = page.get_by_test_id("approvals-history").locator("tr", has_text="Mail 40 customers")
    expect(row).to_contain_text("Approved")
    expect(row).to_contain_text("oscar")
    expect(row).to_contain_text("“go ahead, it is quiet now”")
    expect(badge).to_be_hidden()
    assert ApprovalRequest.objects.get().state == State.APPROVED


def test_a_comment_being_typed_survives_a_new_request_arriving(
    page: Page, asgi_server: LiveServer, operator_a: User, agent_a
):
    ask(agent_a, "First: delete the staging bucket")
    open_inbox(page, asgi_server, "oscar")
    comment = pending(page, "First").get_by_label(re.compile("^Comment"))
    comment.fill("not while the backup runs")  # the field keeps the focus

    ask(agent_a, "Second: mail the customers")
    expect(page.get_by_test_id("approval-badge")).to_have_text("2", timeout=LIVE)  # the count comes at once
    expect(comment).to_be_focused()
    page.keyboard.type(" tonight")
    comment.press("Tab")  # leaving the field: the list is read again a moment later
    expect(pending(page, "Second")).to_be_visible(timeout=LIVE)
    expect(pending(page, "First").get_by_label(re.compile("^Comment"))).to_have_value(
        "not while the backup runs tonight"
    )

    # A rejection without a comment is refused beside its form, and nothing is decided.
    pending(page, "Second").get_by_role("button", name="Reject").click()
    refusal = pending(page, "Second").get_by_test_id("approval-refusal")
    expect(refusal).to_have_text("Not decided: A rejection needs a comment. E10358")
    assert ApprovalRequest.objects.filter(state=State.PENDING).count() == 2


def test_two_approvers_the_first_sees_one_of_two_and_a_second_person_completes_it(
    page: Page, chromium: Browser, asgi_server: LiveServer, operator_a: User, admin_a: User, agent_a
):
    rule_add(tenant_id=agent_a.tenant_id, actor=Actor(user=admin_a), action="email.*", needs_approvers=2)
    ask(agent_a, "Mail every customer")
    open_inbox(page, asgi_server, "oscar")
    request = pending(page, "Mail every customer")
    expect(request.get_by_test_id("approval-progress")).to_have_text("0 of 2 approvals")
    request.get_by_role("button", name="Approve").click()
    expect(page.locator(".msg-success")).to_contain_text("is the first of two")
    request = pending(page, "Mail every customer")
    expect(request.get_by_test_id("approval-progress")).to_have_text("1 of 2 approvals")
    # The same person cannot approve again: their button is gone, and the page says why.
    expect(request.get_by_role("button", name="Approve")).to_have_count(0)
    expect(request.get_by_test_id("approved-by-you")).to_contain_text("the second must come from someone else")

    context = chromium.new_context(viewport={"width": 1366, "height": 900})
    try:
        alice = context.new_page()
        open_inbox(alice, asgi_server, "alice")
        theirs = pending(alice, "Mail every customer")
        expect(theirs).to_contain_text("1 of 2 approvals (by oscar)")
        theirs.get_by_role("button", name="Approve").click()
        expect(alice.locator(".msg-success")).to_contain_text("Approved “Mail every customer”")
    finally:
        context.close()
    # oscar's open page hears of it: the request leaves his list for the history.
    expect(page.get_by_test_id("no-pending")).to_be_visible(timeout=LIVE)
    expect(page.get_by_test_id("approvals-history").locator("tr", has_text="Mail every customer")).to_contain_text(
        "alice"
    )
    done = ApprovalRequest.objects.get()
    assert (done.state, done.decided_by_label, done.votes.count()) == ("approved", "alice", 1)


def test_a_request_that_times_out_shows_expired_on_its_open_page(
    page: Page, asgi_server: LiveServer, operator_a: User, agent_a
):
    request = ask(agent_a, "Restart the database", timeout=timedelta(seconds=10))
    open_inbox(page, asgi_server, "oscar")
    page.get_by_role("link", name="Restart the database").click()
    expect(page).to_have_url(f"{asgi_server.url}/t/acme/approvals/{request.pk}/")
    expect(page.locator("body.live-on")).to_have_count(1)
    expect(page.get_by_test_id("decide")).to_be_visible()

    assert expire_due(now=timezone.now() + timedelta(seconds=11)) == 1  # what the beat's task does
    outcome = page.get_by_test_id("approval-outcome")
    expect(outcome).to_have_text(
        re.compile(r"^Expired at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC: rejected by its timeout\.$")
    )
    expect(page.get_by_test_id("decide")).to_have_count(0)
    page.get_by_role("link", name="Approvals", exact=True).first.click()
    row = page.get_by_test_id("approvals-history").locator("tr", has_text="Restart the database")
    expect(row).to_contain_text("Expired")
    expect(row).to_contain_text("rejected by its timeout")
