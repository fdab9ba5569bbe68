"""A tenant's members: add, change role, remove, the last-admin guard, the audit trail, and
who may use the page."""

from __future__ import annotations

import re
import threading

import pytest
from django.db import connection, transaction
from django.urls import reverse

from audit.models import AuditEntry
from audit.services import Actor
from core.errors import ErrorCode, InterfaceError
from members import services
from tenancy.models import Membership, Role
from tests.conftest import _member, client_for, wait_for
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def audit(action: str) -> list[tuple[str, str, dict, str]]:
    rows = AuditEntry.objects.filter(action=action).order_by("id")
    return [(r.outcome, r.resource_id, r.delta, r.error_code) for r in rows]


def role_of(user, tenant) -> str | None:
    return Membership.objects.filter(user=user, tenant=tenant).values_list("role", flat=True).first()


def test_an_admin_adds_a_person_with_a_role_and_it_is_audited(tenant_a, admin_a):
    newcomer = UserFactory.create(username="nadia")
    response = client_for(admin_a).post(
        reverse("members:add", args=["acme"]), {"username": "ＮＡＤＩＡ", "role": "operator"}, follow=True
    )
    assert response.status_code == 200
    assert "nadia was added as operator." in response.content.decode()
    assert role_of(newcomer, tenant_a) == "operator"
    [row] = AuditEntry.objects.filter(action="member.add")
    assert (row.outcome, row.resource_id, row.delta) == (
        "success",
        str(newcomer.pk),
        {"role": {"from": None, "to": "operator"}},
    )
    assert row.actor_id == admin_a.pk and row.tenant_id == tenant_a.pk


@pytest.mark.parametrize(
    ("username", "role", "says"),
    [
        ("nobody-here", "viewer", "No active account is named 'nobody-here'"),
        ("alice", "viewer", "alice already is a member (admin); change their role instead."),
        ("nadia", "owner", "Unknown role 'owner'; choose viewer, operator or admin."),
        ("", "viewer", "The username is empty"),
    ],
)
def test_a_refused_addition_says_why_keeps_the_input_and_is_audited(tenant_a, admin_a, username, role, says):
    UserFactory.create(username="nadia")
    before = Membership.objects.count()
    response = client_for(admin_a).post(reverse("members:add", args=["acme"]), {"username": username, "role": role})
    page = response.content.decode()
    assert response.status_code == 400
    assert says in page.replace("&#x27;", "'") and "(E10011)" in page
    if username:
        assert f'value="{username}"' in page  # what was typed is still in the form
    assert Membership.objects.count() == before
    assert [(o, code) for o, _, _, code in audit("member.add")] == [("denied", "E10011")]


def test_a_control_character_is_refused_at_the_boundary_and_by_the_service(tenant_a, admin_a):
    response = client_for(admin_a).post(
        reverse("members:add", args=["acme"]), {"username": "nad\x07ia", "role": "viewer"}
    )
    assert response.status_code == 400 and "nothing was changed" in response.content.decode()
    with pytest.raises(InterfaceError, match="The username") as refused:
        services.member_add(tenant=tenant_a, username="nad\x07ia", role="viewer", actor=Actor(user=admin_a))
    assert refused.value.code == ErrorCode.MEMBER_INVALID
    assert Membership.objects.filter(tenant=tenant_a).count() == 1


def test_a_disabled_account_cannot_be_added(tenant_a, admin_a):
    UserFactory.create(username="gone", is_active=False)
    with pytest.raises(InterfaceError) as refused:
        services.member_add(tenant=tenant_a, username="gone", role="viewer", actor=Actor(user=admin_a))
    assert refused.value.code == ErrorCode.MEMBER_INVALID


def test_changing_a_role_is_audited_with_what_it_was(tenant_a, admin_a, viewer_a):
    response = client_for(admin_a).post(reverse("members:role", args=["acme", viewer_a.pk]), {"role": "operator"})
    assert response.status_code == 302
    assert role_of(viewer_a, tenant_a) == "operator"
    assert audit("member.role") == [("success", str(viewer_a.pk), {"role": {"from": "viewer", "to": "operator"}}, "")]
    # The same role again changes nothing, and says so in the trail.
    services.member_role_set(tenant=tenant_a, user_id=viewer_a.pk, role="operator", actor=Actor(user=admin_a))
    assert audit("member.role")[-1][0] == "noop"


def test_the_last_admin_can_be_neither_demoted_nor_removed(tenant_a, admin_a, viewer_a):
    client = client_for(admin_a)
    demoted = client.post(reverse("members:role", args=["acme", admin_a.pk]), {"role": "operator"})
    assert demoted.status_code == 409
    assert "alice is the last admin of Acme; make another member an admin first. (E10012)" in demoted.content.decode()
    removed = client.post(reverse("members:remove", args=["acme", admin_a.pk]))
    assert removed.status_code == 409 and "(E10012)" in removed.content.decode()
    assert role_of(admin_a, tenant_a) == "admin"
    assert audit("member.role")[-1][0::3] == ("denied", "E10012")
    assert audit("member.remove")[-1][0::3] == ("denied", "E10012")
    # With a second admin, either may go.
    MembershipFactory.create(user=UserFactory.create(username="ada"), tenant=tenant_a, role=Role.ADMIN)
    assert client.post(reverse("members:role", args=["acme", admin_a.pk]), {"role": "operator"}).status_code == 302
    assert role_of(admin_a, tenant_a) == "operator"


def test_removing_a_member_ends_their_access_and_is_audited(tenant_a, admin_a, viewer_a):
    assert client_for(viewer_a).get("/t/acme/").status_code == 200
    response = client_for(admin_a).post(reverse("members:remove", args=["acme", viewer_a.pk]))
    assert response.status_code == 302
    assert role_of(viewer_a, tenant_a) is None
    assert client_for(viewer_a).get("/t/acme/").status_code == 404
    assert audit("member.remove") == [("success", str(viewer_a.pk), {"role": {"from": "viewer", "to": None}}, "")]
    again = client_for(admin_a).post(reverse("members:remove", args=["acme", viewer_a.pk]))
    assert again.status_code == 400 and "not a member of this tenant" in again.content.decode()


def test_only_the_tenants_admins_may_use_the_page(tenant_a, tenant_b, admin_a, operator_a, viewer_a):
    url = reverse("members:list", args=["acme"])
    assert client_for(operator_a).get(url).status_code == 403
    assert client_for(viewer_a).get(url).status_code == 403
    assert client_for(operator_a).post(reverse("members:remove", args=["acme", viewer_a.pk])).status_code == 403
    globex_admin = _member("gina", tenant_b, Role.ADMIN)
    assert client_for(globex_admin).get(url).status_code == 404
    assert client_for(globex_admin).post(reverse("members:remove", args=["acme", viewer_a.pk])).status_code == 404
    assert role_of(viewer_a, tenant_a) == "viewer"
    page = client_for(admin_a).get(url).content.decode()
    assert re.findall(r'<tr id="member-\d+">\s*<td>(\w+)', page) == ["alice", "oscar", "vera"]
    assert "Remove…</button>" in page and 'disabled title="The last admin stays' in page


@pytest.mark.django_db(transaction=True)
def test_two_admins_demoting_each_other_at_once_leave_one_admin(tenant_a, admin_a):
    other = _member("ada", tenant_a, Role.ADMIN)
    first_done = threading.Event()
    release = threading.Event()
    outcome: dict[str, object] = {}

    def demote_alice() -> None:
        try:
            with transaction.atomic():  # held open: the admins stay locked until released
                services.member_role_set(tenant=tenant_a, user_id=admin_a.pk, role="viewer", actor=Actor(user=other))
                first_done.set()
                release.wait(10)
            outcome["alice"] = "demoted"
        finally:
            connection.close()

    def demote_ada() -> None:
        try:
            services.member_role_set(tenant=tenant_a, user_id=other.pk, role="viewer", actor=Actor(user=admin_a))
            outcome["ada"] = "demoted"
        except InterfaceError as exc:
            outcome["ada"] = exc.code
        finally:
            connection.close()

    first = threading.Thread(target=demote_alice)
    first.start()
    assert first_done.wait(10)
    second = threading.Thread(target=demote_ada)
    second.start()

    def second_waits_on_the_lock() -> bool:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            return cursor.fetchone()[0] >= 1

    if connection.vendor == "postgresql":
        wait_for(second_waits_on_the_lock, timeout=10, what="the second demotion to wait for the admins' lock")
    release.set()
    first.join(10)
    second.join(10)
    assert outcome == {"alice": "demoted", "ada": ErrorCode.LAST_ADMIN}
    assert list(Membership.objects.filter(tenant=tenant_a, role=Role.ADMIN).values_list("user_id", flat=True)) == [
        other.pk
    ]
