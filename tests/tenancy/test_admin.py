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


def test_membership_changes_in_admin_are_audited_and_keep_the_last_admin(staff, tenant_a, tenant_b):
    from audit.models import AuditEntry, Outcome
    from tests.factories import UserFactory

    client = client_for(staff)
    newbie = UserFactory.create(username="nina")
    added = client.post("/admin/tenancy/membership/add/", {"tenant": tenant_a.pk, "user": newbie.pk, "role": "viewer"})
    assert added.status_code == 302, added.content.decode()[-2000:]
    nina = Membership.objects.get(user=newbie, tenant=tenant_a)
    assert nina.role == Role.VIEWER
    outsider = client.post(
        "/admin/tenancy/membership/add/", {"tenant": tenant_b.pk, "user": newbie.pk, "role": "admin"}
    )
    assert outsider.status_code == 200 and not Membership.objects.filter(tenant=tenant_b).exists()  # not sam's tenant

    assert client.post(f"/admin/tenancy/membership/{nina.pk}/change/", {"role": "operator"}).status_code == 302
    nina.refresh_from_db()
    assert nina.role == Role.OPERATOR

    # Sam is Acme's only admin: the form keeps the role and says why; a deletion is refused.
    own = Membership.objects.get(user=staff, tenant=tenant_a)
    demoted = client.post(f"/admin/tenancy/membership/{own.pk}/change/", {"role": "viewer"})
    assert demoted.status_code == 200 and "last admin" in demoted.content.decode()
    removed = client.post(f"/admin/tenancy/membership/{own.pk}/delete/", {"post": "yes"}, follow=True)
    assert "last admin" in removed.content.decode() and "E10012" in removed.content.decode()
    own.refresh_from_db()
    assert own.role == Role.ADMIN

    assert client.post(f"/admin/tenancy/membership/{nina.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not Membership.objects.filter(pk=nina.pk).exists()
    trail = list(
        AuditEntry.objects.filter(resource_type="membership").order_by("id").values_list("action", "outcome", "actor")
    )
    assert trail == [
        ("member.add", Outcome.SUCCESS, staff.pk),
        ("member.role", Outcome.SUCCESS, staff.pk),
        ("member.remove", Outcome.DENIED, staff.pk),
        ("member.remove", Outcome.SUCCESS, staff.pk),
    ]
    # No bulk deletion that would pass the guard by: one at a time.
    assert "delete_selected" not in client.get("/admin/tenancy/membership/").content.decode()


def test_the_audit_trail_and_batches_are_read_only_in_admin(superuser, staff, tenant_a):
    from django.utils import timezone

    from audit.models import AuditEntry
    from control.models import Batch

    entry = AuditEntry.objects.create(
        tenant=tenant_a, occurred_at=timezone.now(), actor_label="sam", action="agent.pause", resource_type="agent",
        resource_id="a1", outcome="success",
    )  # fmt: skip
    batch = Batch.objects.create(tenant=tenant_a, action="pause", created_at=timezone.now(), reason="maintenance")
    client = client_for(superuser)
    listing = client.get("/admin/audit/auditentry/?q=agent.pause").content.decode()
    assert "agent:a1" in listing
    page = client.get(f"/admin/audit/auditentry/{entry.pk}/change/").content.decode()
    assert 'name="_save"' not in page and "agent.pause" in page
    assert client.post(f"/admin/audit/auditentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert client.get("/admin/audit/auditentry/add/").status_code == 403
    assert "maintenance" in client.get(f"/admin/control/batch/{batch.pk}/change/").content.decode()
    assert client.get("/admin/control/batch/add/").status_code == 403
    assert AuditEntry.objects.filter(pk=entry.pk).exists()
