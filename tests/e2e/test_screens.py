"""In Chromium: the main pages on a 390 px phone (nothing wider than the screen, the agent
list as cards with their states in view) and under axe-core (no serious or critical
accessibility violation)."""

from __future__ import annotations

from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Page, ViewportSize, expect

from alerts.models import Alert
from alerts.services import default_rules
from control.models import Batch
from costs.models import Budget
from events.models import Event
from tests.conftest import LiveServer
from tests.dashboard.conftest import live_agent
from tests.e2e.test_journey import sign_in
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = ViewportSize(width=390, height=844)

# Every visible element's right edge against the viewport's width; an element inside a box
# that scrolls or clips sideways is that box's business (a wide chart scrolls in its card).
OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const over = [];
  for (const el of document.querySelectorAll("body *")) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || !el.checkVisibility({visibilityProperty: true})) continue;
    let box = el.parentElement, clipped = false;
    while (box && box !== document.body) {
      if (["auto", "scroll", "hidden", "clip"].includes(getComputedStyle(box).overflowX)) { clipped = true; break; }
      box = box.parentElement;
    }
    if (!clipped && r.right > width + 0.5) over.push(`${el.tagName.toLowerCase()}.${el.className} in ${(el.parentElement.closest('[class], [id]') || {}).className || ''} ends at ${Math.round(r.right)}`);
  }
  return {width, scrollWidth: document.documentElement.scrollWidth, over: over.slice(0, 10)};
}"""


@pytest.fixture
def pages(tenant_a, admin_a) -> dict[str, str]:
    agents = [
        live_agent(
            tenant_a,
            "crawler-with-a-rather-long-external-id-1",
            cpu=22.0,
            labels={"team": "search", "zone": "eu-west-1"},
        ),
        live_agent(tenant_a, "bidder-1", cpu=91.0, observed="paused", desired="paused"),
    ]
    batch = Batch.objects.create(tenant=tenant_a, created_by=admin_a, action="pause", created_at=timezone.now())
    rule = default_rules(tenant_a)[0]
    alert = Alert.objects.create(
        tenant=tenant_a, rule=rule, agent=agents[0], fingerprint="agent:x", state="firing", severity="critical",
        message="Agent unresponsive: heartbeat age 123 s (> 90)", started_at=timezone.now(),
        fired_at=timezone.now(), evaluated_at=timezone.now(),
    )  # fmt: skip
    # A budget, so the cost page's budgets table shows (with its admin's "Remove…").
    Budget.objects.create(tenant=tenant_a, name="Search team", selector="team=search", monthly_usd=500, auto_pause=True)
    event = Event.objects.create(
        tenant=tenant_a, agent=agents[0], type="control.pause", severity="warning", occurred_at=timezone.now(),
        message="pause of crawler-1 by alice: maintenance window", data={"by": "alice", "reason": "maintenance"},
    )  # fmt: skip
    return {
        "overview": "/t/acme/",
        "agent list": "/t/acme/agents/",
        "agent": f"/t/acme/agents/{agents[0].pk}/",
        "members": "/t/acme/settings/members/",
        "batches": "/t/acme/control/batches/",
        "batch": f"/t/acme/control/batches/{batch.pk}/",
        "API tokens": "/t/acme/settings/tokens/",
        "alerts": "/t/acme/alerts/",
        "alert": f"/t/acme/alerts/{alert.pk}/",
        "alert rules": "/t/acme/alerts/rules/",
        "new alert rule": "/t/acme/alerts/rules/new/",
        "silences": "/t/acme/alerts/silences/",
        "notification targets": "/t/acme/alerts/targets/",
        "events": "/t/acme/events/",
        "event": f"/t/acme/events/{event.pk}/",
        "audit trail": "/t/acme/audit/",
        "costs": "/t/acme/costs/",
    }


def test_on_a_390_px_phone_no_page_is_wider_than_the_screen(
    page: Page, asgi_server: LiveServer, admin_a: User, pages, tmp_path: Path
):
    page.set_viewport_size(PHONE)
    page.goto(f"{asgi_server.url}/login/")
    sign_in(page, "alice", PASSWORD)
    for name, path in pages.items():
        page.goto(f"{asgi_server.url}{path}")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=tmp_path / f"{name}.png", full_page=True)
        found = page.evaluate(OVERFLOW)
        assert found["scrollWidth"] <= found["width"] and not found["over"], f"{name}: {found}"

    # The tenant switcher, opened, fits too.
    page.goto(f"{asgi_server.url}/t/acme/")
    page.get_by_test_id("tenant-switcher").locator("summary").click()
    expect(page.get_by_role("menuitem").first).to_be_visible()
    found = page.evaluate(OVERFLOW)
    assert found["scrollWidth"] <= found["width"] and not found["over"], f"tenant switcher: {found}"

    # The list as cards: each agent's observed state is on screen, not in a column off to the right.
    page.goto(f"{asgi_server.url}/t/acme/agents/")
    state = page.get_by_test_id("agent-table").locator("tr", has_text="Bidder 1").locator("td[data-label='Observed']")
    expect(state).to_be_in_viewport()
    box = state.bounding_box()
    assert box is not None and box["x"] + box["width"] <= PHONE["width"]
    expect(state).to_contain_text("Paused")


def test_the_main_pages_have_no_serious_accessibility_violation(
    page: Page, asgi_server: LiveServer, admin_a: User, pages
):
    axe = Axe()
    page.goto(f"{asgi_server.url}/login/")
    found = {"sign-in": axe.run(page)}
    sign_in(page, "alice", PASSWORD)
    for name, path in pages.items():
        page.goto(f"{asgi_server.url}{path}")
        page.wait_for_load_state("networkidle")
        found[name] = axe.run(page)
    serious = {
        name: [
            (v["id"], v["impact"], [(n["target"], n["failureSummary"][-160:]) for n in v["nodes"][:4]])
            for v in result.response["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        for name, result in found.items()
    }
    assert all(not v for v in serious.values()), {name: v for name, v in serious.items() if v}
