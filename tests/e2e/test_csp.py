"""In Chromium: the console's pages and the admin run under the Content-Security-Policy
(no inline script or style, docs/operations.md "Security headers") without a single
violation, through their dialogs, forms and live sockets."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Page, expect

from events.models import Event
from fleet.models import Agent
from tests.conftest import LiveServer
from tests.e2e.test_journey import sign_in
from tests.factories import PASSWORD, AgentFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Every violation is also reported on the console, whatever the browser logs by itself.
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`);
});
"""


class Violations:
    def __init__(self, page: Page) -> None:
        self.found: list[str] = []
        page.add_init_script(REPORT_VIOLATIONS)
        page.on("console", self._heard)

    def _heard(self, message: object) -> None:
        text = message.text  # type: ignore[attr-defined]
        if "Content Security Policy" in text or "CSP violation" in text:
            self.found.append(text)

    def take(self) -> list[str]:
        found, self.found = self.found, []
        return found


@pytest.fixture
def watched(page: Page) -> Iterator[tuple[Page, Violations]]:
    yield page, Violations(page)


@pytest.fixture
def quota_agent(tenant_a) -> Agent:
    return AgentFactory.create(
        tenant=tenant_a, external_id="crawler-3", name="Crawler 3", quotas={"tokens": {"day": 1000}}
    )


def settle(page: Page) -> None:
    page.wait_for_load_state("networkidle")


def test_the_main_pages_and_the_admin_cause_no_csp_violation(
    watched: tuple[Page, Violations], asgi_server: LiveServer, staff: User, quota_agent: Agent
) -> None:
    page, violations = watched
    base = asgi_server.url

    # The header is there, and the collector does hear a violation when there is one.
    response = page.goto(f"{base}/login/")
    assert response is not None
    policy = response.headers["content-security-policy"]
    for directive in ("script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "object-src 'none'"):
        assert directive in policy, policy
    with page.expect_console_message(lambda m: "CSP violation" in m.text, timeout=5_000):
        page.evaluate("""document.body.insertAdjacentHTML("beforeend", '<div style="color: red"></div>')""")
    assert violations.take(), "the collector heard no violation for an inline style"
    page.reload()
    settle(page)
    assert violations.take() == [], "sign-in page"

    sign_in(page, "sam", PASSWORD)
    expect(page).to_have_url(f"{base}/t/acme/")
    settle(page)
    assert violations.take() == [], "overview"

    page.goto(f"{base}/t/acme/agents/")
    settle(page)
    expect(page.get_by_test_id("agent-table")).to_contain_text("Crawler 3")
    assert violations.take() == [], "agent list"

    page.goto(f"{base}/t/acme/agents/{quota_agent.pk}/")
    settle(page)
    bar = page.locator(".bar > span.w-0")
    expect(bar).to_have_count(1)
    expect(bar).to_have_css("width", "0px")
    actions = page.get_by_test_id("agent-actions")
    for button, title in (("Pause…", "Pause"), ("Emergency stop…", "Emergency stop"), ("Set a quota…", "Set a quota")):
        actions.get_by_role("button", name=button).click()
        dialog = page.get_by_role("dialog", name=f"{title}: {quota_agent.name}")  # names the agent
        expect(dialog).to_be_visible()
        dialog.get_by_role("button", name="Cancel").click()
        expect(dialog).to_be_hidden()
    assert violations.take() == [], "agent detail and its dialogs"

    # The events page, one event opened in place, and its live tail on the event socket.
    Event.objects.create(tenant=quota_agent.tenant, agent=quota_agent, type="task.failed", occurred_at=timezone.now())
    page.goto(f"{base}/t/acme/events/")
    expect(page.get_by_test_id("event-list")).to_have_attribute("data-tail-ready", "true")
    page.locator("#event-list > li summary").first.click()
    expect(page.get_by_test_id("event-agent").first).to_be_visible()
    assert violations.take() == [], "events page"

    page.goto(f"{base}/t/acme/settings/tokens/")
    page.get_by_label("Name").fill("csp check")
    page.get_by_label("Expires after").fill("30")
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_test_id("new-token")).to_be_visible()
    page.locator("tr", has_text="csp check").get_by_role("button", name="Revoke").click()
    page.get_by_role("dialog", name=re.compile("^Revoke “csp check”")).get_by_role("button", name="Revoke").click()
    expect(page.locator("tr", has_text="csp check")).to_contain_text("Revoked")
    assert violations.take() == [], "tenant token pages"

    page.goto(f"{base}/account/tokens/")
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Create token").click()
    expect(page.get_by_test_id("new-token")).to_be_visible()
    # A dismissed confirmation revokes nothing: the question is asked by static script.
    page.locator("tr", has_text="laptop").get_by_role("button", name="Revoke").click()
    asked = page.get_by_role("dialog", name=re.compile("^Revoke “laptop”"))
    asked.get_by_role("button", name="Cancel").click()
    expect(asked).to_be_hidden()
    expect(page.locator("tr", has_text="laptop")).to_contain_text("Active")
    assert violations.take() == [], "personal token pages"

    admin_pages = (
        "/admin/",
        "/admin/tenancy/apitoken/",
        "/admin/tenancy/apitoken/add/",
        f"/admin/tenancy/tenant/{quota_agent.tenant_id}/change/",  # inlines: the admin's own scripts
        "/admin/fleet/agent/",
    )
    for path in admin_pages:
        page.goto(f"{base}{path}")
        settle(page)
        expect(page.locator("#site-name")).to_be_visible()
        assert violations.take() == [], path
