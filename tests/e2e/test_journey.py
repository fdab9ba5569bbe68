"""The browser journey: sign in, land on a tenant's agents, switch tenant, see the other's.

Real Chromium (Playwright) against the ASGI app served by uvicorn over the committed test
database. Set ``L10_E2E_SCREENSHOT=/some/path.png`` to keep a picture of the agent list.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import Locator, Page, Response, expect

from fleet.models import DesiredState, ObservedState
from tenancy.models import Role, Tenant
from tests.conftest import LiveServer
from tests.factories import PASSWORD, AgentFactory, MembershipFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ACME_AGENTS = ["Acme anvil", "Acme rocket skates"]
GLOBEX_AGENTS = ["Globex doomsday device", "Globex hammock"]


@pytest.fixture
def two_tenants(admin_a: User, tenant_a: Tenant, tenant_b: Tenant) -> User:
    """alice: admin of Acme (the cast), viewer of Globex; two agents in each tenant."""
    MembershipFactory.create(user=admin_a, tenant=tenant_b, role=Role.VIEWER)
    now = timezone.now()
    AgentFactory.create(
        tenant=tenant_a,
        external_id="anvil",
        name=ACME_AGENTS[0],
        observed_state=ObservedState.RUNNING,
        last_heartbeat_at=now - timedelta(seconds=4),
        cpu_percent=12.5,
        memory_mb=512.0,
    )
    AgentFactory.create(
        tenant=tenant_a,
        external_id="rocket-skates",
        name=ACME_AGENTS[1],
        labels={"team": "roadrunner", "zone": "eu-1"},
        desired_state=DesiredState.PAUSED,
        observed_state=ObservedState.ERROR,
        last_heartbeat_at=now - timedelta(minutes=3),
        cpu_percent=97.0,
        memory_mb=2048.0,
    )
    AgentFactory.create(tenant=tenant_b, external_id="doomsday", name=GLOBEX_AGENTS[0])
    AgentFactory.create(
        tenant=tenant_b,
        external_id="hammock",
        name=GLOBEX_AGENTS[1],
        desired_state=DesiredState.STOPPED,
        observed_state=ObservedState.STOPPED,
        last_heartbeat_at=now - timedelta(hours=2),
    )
    return admin_a


@pytest.fixture
def console(page: Page, asgi_server: LiveServer) -> Iterator[Page]:
    """The page, failing the test if any of the console's own responses is a server error
    or a missing asset (a stylesheet that 404s under uvicorn, say)."""
    broken: list[str] = []

    def check(response: Response) -> None:
        if response.url.startswith(asgi_server.url) and (
            response.status >= 500 or (response.status == 404 and "/static/" in response.url)
        ):
            broken.append(f"{response.status} {response.url}")

    page.on("response", check)
    yield page
    assert not broken, f"broken responses: {broken}"


def agent_names(page: Page) -> Locator:
    return page.get_by_test_id("agent-table").locator("tbody tr td:nth-child(2)")


def sign_in(page: Page, username: str, password: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_sign_in_switch_tenant_and_see_its_agents(console: Page, asgi_server: LiveServer, two_tenants: User) -> None:
    page = console
    base = asgi_server.url

    # Anonymous: the home page sends us to the sign-in form, remembering where we were going.
    page.goto(f"{base}/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_test_id("tenant-switcher")).to_have_count(0)

    sign_in(page, "alice", PASSWORD)

    # The first tenant by name: Acme's overview, then its agents, only Acme's.
    expect(page).to_have_url(f"{base}/t/acme/")
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"Overview\s+Acme"))
    expect(page.get_by_test_id("total-agents")).to_have_text("2")
    page.get_by_role("banner").get_by_role("link", name="Agents").click()
    expect(page).to_have_url(f"{base}/t/acme/agents/")
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"Agents\s+Acme"))
    expect(page.get_by_test_id("agent-count")).to_have_text("2 agents")
    expect(agent_names(page)).to_have_text(ACME_AGENTS)
    expect(page.get_by_test_id("agent-table")).not_to_contain_text("Globex")
    # States are text as well as colour, and the stylesheet is applied (a pill, not bare text).
    skates = page.locator("tr", has_text=ACME_AGENTS[1])
    expect(skates.locator(".state")).to_have_text(["Paused", "Error"])
    expect(skates.locator(".state-error")).to_have_css("border-top-style", "solid")

    header = page.get_by_role("banner")
    switcher = page.get_by_test_id("tenant-switcher")
    expect(switcher.locator("summary")).to_have_text("Acme")
    expect(header.locator(".who")).to_have_text("alice · Admin")
    expect(header.get_by_role("link", name="API tokens")).to_be_visible()

    if shot := os.environ.get("L10_E2E_SCREENSHOT"):
        page.screenshot(path=shot, full_page=True)

    # Switch tenant through the header menu.
    menu = switcher.get_by_role("menu")
    expect(menu).to_be_hidden()
    switcher.locator("summary").click()
    expect(menu).to_be_visible()
    expect(menu.get_by_role("menuitem")).to_have_text([re.compile(r"Acme\s+Admin"), re.compile(r"Globex\s+Viewer")])
    expect(menu.get_by_role("menuitem", name="Acme")).to_have_attribute("aria-current", "true")
    menu.get_by_role("menuitem", name="Globex").click()

    expect(page).to_have_url(f"{base}/t/globex/")
    page.get_by_role("banner").get_by_role("link", name="Agents").click()
    expect(page).to_have_url(f"{base}/t/globex/agents/")
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"Agents\s+Globex"))
    expect(agent_names(page)).to_have_text(GLOBEX_AGENTS)
    expect(page.get_by_test_id("agent-table")).not_to_contain_text("Acme")
    expect(switcher.locator("summary")).to_have_text("Globex")
    expect(header.locator(".who")).to_have_text("alice · Viewer")
    # A viewer of Globex is offered no token page there.
    expect(header.get_by_role("link", name="Agents")).to_have_attribute("aria-current", "page")
    expect(header.get_by_role("link", name="API tokens")).to_have_count(0)

    # The console remembers the last tenant: home now leads to Globex.
    page.goto(f"{base}/")
    expect(page).to_have_url(f"{base}/t/globex/")


def test_wrong_password_shows_the_error(console: Page, asgi_server: LiveServer, two_tenants: User) -> None:
    page = console
    page.goto(f"{asgi_server.url}/login/")

    sign_in(page, "alice", "not-the-password")

    expect(page.get_by_role("alert")).to_contain_text("Please enter a correct username and password")
    expect(page).to_have_url(f"{asgi_server.url}/login/")
    expect(page.get_by_label("Username")).to_have_value("alice")
    expect(page.get_by_label("Password")).to_have_value("")
    expect(page.get_by_test_id("tenant-switcher")).to_have_count(0)
