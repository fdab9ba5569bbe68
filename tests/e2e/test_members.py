"""In Chromium: a tenant admin adds a member, changes their role, and cannot demote or
remove the tenant's last admin."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from tenancy.models import Membership
from tests.conftest import LiveServer
from tests.e2e.test_journey import sign_in
from tests.factories import PASSWORD, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_admin_adds_a_member_changes_their_role_and_keeps_the_last_admin(
    page: Page, asgi_server: LiveServer, admin_a: User, tenant_a
):
    UserFactory.create(username="nadia")
    page.goto(f"{asgi_server.url}/login/")
    sign_in(page, "alice", PASSWORD)
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Members").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Members")

    # A name that has no account: refused, said why, the input kept.
    form = page.get_by_test_id("member-add")
    form.get_by_label("Username").fill("nadja")
    form.get_by_role("button", name="Add").click()
    expect(page.get_by_role("alert")).to_contain_text("No active account is named 'nadja'")
    expect(page.get_by_test_id("member-add").get_by_label("Username")).to_have_value("nadja")

    form = page.get_by_test_id("member-add")
    form.get_by_label("Username").fill("nadia")
    form.get_by_label("Role").select_option("viewer")
    form.get_by_role("button", name="Add").click()
    expect(page.get_by_role("status")).to_contain_text("nadia was added as viewer.")
    row = page.get_by_test_id("members").locator("tr", has_text="nadia")
    expect(row.get_by_label("Role of nadia")).to_have_value("viewer")

    row.get_by_label("Role of nadia").select_option("operator")
    row.get_by_role("button", name="Change role").click()
    expect(page.get_by_role("status")).to_contain_text("nadia's role is operator.")
    assert Membership.objects.get(user__username="nadia", tenant=tenant_a).role == "operator"

    # The last admin: no remove button to press, and demoting is refused with its reason.
    me = page.get_by_test_id("members").locator("tr", has_text="alice")
    expect(me.get_by_role("button", name="Remove…")).to_be_disabled()
    me.get_by_label("Role of alice").select_option("operator")
    me.get_by_role("button", name="Change role").click()
    expect(page.get_by_role("alert")).to_contain_text("alice is the last admin of Acme")
    expect(page.get_by_role("alert")).to_contain_text("E10012")
    assert Membership.objects.get(user=admin_a, tenant=tenant_a).role == "admin"
