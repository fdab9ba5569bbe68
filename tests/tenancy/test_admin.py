"""Django admin: superusers see everything; other staff only their admin tenants."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from tenancy.models import ApiToken, Membership, Role
from tests.conftest import client_for
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def fleets(agent_a, agent_b):
    return agent_a, agent_b


def test_a_superuser_sees_every_tenants_agents(superuser, fleets):
    page = client_for(superuser).get("/admin/fleet/agent/").content.decode()
    assert "Worker 1" in page and "Globex worker" in page


def test_staff_see_only_the_tenants_they_administer(staff, fleets, tenant_b):
    client = client_for(staff)
    page = client.get("/admin/fleet/agent/").content.decode()
    assert "Worker 1" in page
    assert "Globex worker" not in page
    assert client.get(f"/admin/fleet/agent/{fleets[1].pk}/change/").status_code == 302  # not found → admin index
    tenants = client.get("/admin/tenancy/tenant/").content.decode()
    assert "Acme" in tenants and "Globex" not in tenants


def test_staff_who_are_only_viewers_see_nothing(staff, tenant_a, fleets):
    Membership.objects.filter(user=staff).update(role=Role.VIEWER)
    assert client_for(staff).get("/admin/fleet/agent/").status_code == 403


def test_staff_may_create_tokens_only_for_their_tenants_and_see_the_token_once(staff, tenant_a, tenant_b):
    client = client_for(staff)
    form = client.get("/admin/tenancy/apitoken/add/").content.decode()
    assert "Acme" in form and "Globex" not in form
    response = client.post("/admin/tenancy/apitoken/add/", {"tenant": tenant_a.pk, "name": "ops"}, follow=True)
    assert response.status_code == 200
    shown = re.search(r"(l10_[0-9a-f]{8}_[A-Za-z0-9_-]+)", response.content.decode())
    assert shown
    token = ApiToken.objects.get()
    assert token.tenant == tenant_a and token.created_by == staff
    refused = client.post("/admin/tenancy/apitoken/add/", {"tenant": tenant_b.pk, "name": "sneaky"})
    assert refused.status_code == 200  # the form comes back with an error
    assert ApiToken.objects.count() == 1


def test_agent_list_in_admin_filters_and_searches(superuser, tenant_a):
    AgentFactory.create(tenant=tenant_a, external_id="crawler-9", name="Crawler 9")
    client = client_for(superuser)
    assert "Crawler 9" in client.get("/admin/fleet/agent/?q=crawler").content.decode()
    assert "Crawler 9" not in client.get("/admin/fleet/agent/?observed_state__exact=running").content.decode()


def test_an_agent_in_admin_shows_times_to_the_second_and_keeps_controls_internals_read_only(superuser, tenant_a):
    agent = AgentFactory.create(
        tenant=tenant_a, name="Timed", last_heartbeat_at=datetime(2026, 11, 30, 8, 35, 12, tzinfo=UTC)
    )
    page = client_for(superuser).get(f"/admin/fleet/agent/{agent.pk}/change/").content.decode()
    assert "2026-11-30 08:35:12 UTC" in page
    for internal in ("quotas", "delivered_version", "pause_until", "stop_unconfirmed_at", "desired_state"):
        assert f'name="{internal}"' not in page, f"{internal} is editable"
    assert 'name="name"' in page  # what staff may edit stays a field
    # Labels people read, with what the field means, not raw field names.
    assert (
        ">CPU %:<" in page
        and ">Last heartbeat:<" in page
        and "cpu_percent" not in page.split("<form", 1)[1].split("name=")[0]
    )
    assert "What the console tells the agent; changed on the agent" in page
