"""Every class of audited action leaves its entry (docs/audit.md, "What is recorded"),
done the way people do it: through the pages, the sign-in form, Django admin and the
Python API. One row per action class: what to do, and the entry it must leave (action,
outcome, whose trail, who)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client
from django.utils import timezone

from alerts.models import Alert, AlertRule
from audit.models import AuditEntry
from tenancy.models import ApiToken
from tests.conftest import client_for
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-test-password-1"


@dataclass(frozen=True)
class Case:
    do: Callable[[Any], Any]  # given the world
    action: str
    outcome: str
    trail: str = "tenant"  # "tenant": tenant A's; "platform": the platform's own
    actor: str = "admin"  # the label recorded: a fixture's username, or a literal in quotes
    from_request: bool = True  # done in a request, whose address is recorded (not by an agent or a task)


class World:
    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.request = request
        self.tenant = request.getfixturevalue("tenant_a")
        self.admin = request.getfixturevalue("admin_a")
        self.operator = request.getfixturevalue("operator_a")
        self.viewer = request.getfixturevalue("viewer_a")
        self.agent = request.getfixturevalue("agent_a")
        self.staff = request.getfixturevalue("superuser")

    def url(self, path: str) -> str:
        return f"/t/{self.tenant.slug}/{path}"

    def alert(self) -> Alert:
        rule = AlertRule.objects.create(
            tenant=self.tenant, name="hot", metric="cpu_percent", threshold=1, created_at=timezone.now(),
            updated_at=timezone.now(),
        )  # fmt: skip
        return Alert.objects.create(
            tenant=self.tenant, rule=rule, agent=self.agent, fingerprint="agent:x", state="firing", severity="warning",
            message="m", started_at=timezone.now(), evaluated_at=timezone.now(),
        )  # fmt: skip

    def sign_in_form(self, username: str, password: str) -> Any:
        return Client().post("/login/", {"username": username, "password": password})


def control(action: str, user: str = "operator", **data: str) -> Callable[[World], Any]:
    def do(w: World) -> Any:
        return client_for(getattr(w, user)).post(w.url(f"agents/{w.agent.pk}/control/{action}/"), data)

    return do


def token_revoke(w: World) -> Any:
    token = ApiToken.objects.get(tenant=w.tenant)
    return client_for(w.admin).post(w.url(f"settings/tokens/{token.pk}/revoke/"))


def personal_revoke(w: World) -> Any:
    from tenancy.services import personal_token_create

    token, _ = personal_token_create(user=w.operator, name="laptop")
    return client_for(w.operator).post(f"/account/tokens/{token.pk}/revoke/")


def sign_out(w: World) -> Any:
    client = Client()
    client.post("/login/", {"username": w.operator.username, "password": PASSWORD})
    return client.post("/logout/")


def admin_change_agent(w: World) -> Any:
    response = client_for(w.staff).post(
        f"/admin/fleet/agent/{w.agent.pk}/change/", {"name": "Renamed in admin", "labels": '{"team": "a"}'}
    )
    assert response.status_code == 302, response.content.decode()[-2000:]  # saved, not a form with errors
    return response


def admin_change_user(w: World) -> Any:
    user = User.objects.create_user("loner", password=PASSWORD)
    response = client_for(w.staff).post(
        f"/admin/auth/user/{user.pk}/change/",
        {"username": "loner", "first_name": "Lone", "last_name": "", "email": "", "is_active": "on",
         "date_joined_0": "2026-11-30", "date_joined_1": "12:00:00"},
    )  # fmt: skip
    assert response.status_code == 302, response.content.decode()[-2000:]
    return response


def budget_remove(w: World) -> Any:
    from costs.models import Budget

    budget = Budget.objects.create(tenant=w.tenant, name="Acme", monthly_usd=500)
    return client_for(w.admin).post(w.url(f"costs/budgets/{budget.pk}/remove/"))


def approval_asked(w: World, timeout_s: int = 1800) -> Any:
    from datetime import timedelta

    from approvals.services import NewRequest, request_create

    new = NewRequest("email.send", "Mail 40 customers", timeout=timedelta(seconds=timeout_s))
    return request_create(agent=w.agent, new=new)[0]


def approval_decided(approve: bool, user: str = "operator") -> Callable[[World], Any]:
    def do(w: World) -> Any:
        data = {"decision": "approve" if approve else "reject", "comment": "checked"}
        return client_for(getattr(w, user)).post(w.url(f"approvals/{approval_asked(w).pk}/decide/"), data)

    return do


def approval_expired(w: World) -> Any:
    from datetime import timedelta

    from approvals.services import expire_due

    approval_asked(w, timeout_s=10)
    return expire_due(now=timezone.now() + timedelta(seconds=11))  # what the periodic task does


def approval_rule_remove(w: World) -> Any:
    from approvals.models import ApprovalRule

    rule = ApprovalRule.objects.create(tenant=w.tenant, action="deploy.*", needs_role="admin")
    return client_for(w.admin).post(w.url(f"approvals/rules/{rule.pk}/remove/"))


def log_action(w: World) -> Any:
    from l10console.services import AuditService

    async def run() -> None:
        try:
            await AuditService().log_action(
                actor=w.operator.username, action="budget.change", resource_type="budget", resource_id="monthly",
                tenant_id=w.tenant.slug,
            )  # fmt: skip
        finally:
            await sync_to_async(connections.close_all)()

    asyncio.run(run())


CASES = {
    # Control: every action, and a refusal (the role) and a failure (the transition).
    "pause": Case(control("pause", reason="maintenance"), "agent.pause", "success", actor="operator"),
    "resume": Case(control("resume"), "agent.resume", "noop", actor="operator"),
    "stop": Case(control("stop", user="admin", reason="runaway"), "agent.stop", "success"),
    "quota": Case(
        control("quota", user="admin", quota_type="tokens", period="day", new_limit="5000"), "agent.quota", "success"
    ),
    "pause refused to a viewer": Case(control("pause", user="viewer"), "agent.pause", "denied", actor="viewer"),
    "stop refused to an operator": Case(control("stop", reason="x"), "agent.stop", "denied", actor="operator"),
    # Alerts: acknowledge, snooze, silences, rules, targets.
    "acknowledge": Case(
        lambda w: client_for(w.operator).post(w.url(f"alerts/{w.alert().pk}/acknowledge/"), {"comment": "on it"}),
        "alert.acknowledge",
        "success",
        actor="operator",
    ),
    "snooze": Case(
        lambda w: client_for(w.operator).post(w.url(f"alerts/{w.alert().pk}/snooze/"), {"for": "1h"}),
        "alert.snooze",
        "success",
        actor="operator",
    ),
    "silence": Case(
        lambda w: client_for(w.operator).post(w.url("alerts/silences/add/"), {"matcher": "team=a", "hours": "2"}),
        "alert_silence.create",
        "success",
        actor="operator",
    ),
    "rule change": Case(
        lambda w: client_for(w.admin).post(
            w.url("alerts/rules/new/"),
            {
                "name": "CPU hot",
                "metric": "cpu_percent",
                "aggregation": "avg",
                "comparator": "gt",
                "threshold": "90",
                "window_seconds": "300",
                "for_seconds": "60",
                "min_samples": "1",
                "no_data": "ok",
                "severity": "warning",
                "scope": "all",
                "enabled": "on",
            },
        ),
        "alert_rule.create",
        "success",
    ),
    # Tokens: a tenant's, and a person's (in each of their tenants).
    "token create": Case(
        lambda w: client_for(w.admin).post(w.url("settings/tokens/new/"), {"name": "fleet-7"}),
        "token.create",
        "success",
    ),
    "token revoke": Case(token_revoke, "token.revoke", "success"),
    "personal token create": Case(
        lambda w: client_for(w.operator).post("/account/tokens/new/", {"name": "laptop"}),
        "token.create",
        "success",
        actor="operator",
    ),
    "personal token revoke": Case(personal_revoke, "token.revoke", "success", actor="operator"),
    # Members.
    "member add": Case(
        lambda w: client_for(w.admin).post(w.url("settings/members/add/"), {"username": "newcomer", "role": "viewer"}),
        "member.add",
        "success",
    ),
    "member role": Case(
        lambda w: client_for(w.admin).post(w.url(f"settings/members/{w.viewer.pk}/role/"), {"role": "operator"}),
        "member.role",
        "success",
    ),
    "member remove": Case(
        lambda w: client_for(w.admin).post(w.url(f"settings/members/{w.viewer.pk}/remove/")), "member.remove", "success"
    ),
    # Costs: a budget set and one removed on the cost page.
    "budget set": Case(
        lambda w: client_for(w.admin).post(w.url("costs/budgets/"), {"name": "Acme", "monthly_usd": "500"}),
        "budget.set",
        "success",
    ),
    "budget remove": Case(budget_remove, "budget.remove", "success"),
    # Approvals: an agent asks (its service, which the agent's API calls), a person decides
    # on the inbox, the periodic task expires, admins keep the rules.
    "approval request": Case(
        approval_asked, "approval.request", "success", actor="'agent worker-1'", from_request=False
    ),
    "approval approve": Case(approval_decided(True), "approval.approve", "success", actor="operator"),
    "approval reject": Case(approval_decided(False), "approval.reject", "success", actor="operator"),
    "approval refused to a viewer": Case(
        approval_decided(True, "viewer"), "approval.approve", "denied", actor="viewer"
    ),
    "approval expire": Case(approval_expired, "approval.expire", "success", actor="'system'", from_request=False),
    "approval rule create": Case(
        lambda w: client_for(w.admin).post(w.url("approvals/rules/add/"), {"action": "deploy.*", "needs_admin": "on"}),
        "approval_rule.create",
        "success",
    ),
    "approval rule delete": Case(approval_rule_remove, "approval_rule.delete", "success"),
    # Signing in and out.
    "sign-in": Case(lambda w: w.sign_in_form(w.operator.username, PASSWORD), "auth.login", "success", actor="operator"),
    "sign-out": Case(sign_out, "auth.logout", "success", actor="operator"),
    "failed sign-in": Case(
        lambda w: w.sign_in_form(w.operator.username, "wrong-password"), "auth.login", "denied", actor="'anonymous'"
    ),
    "failed sign-in, unknown name": Case(
        lambda w: w.sign_in_form("nobody-at-all", "whatever"),
        "auth.login",
        "denied",
        trail="platform",
        actor="'anonymous'",
    ),
    # Django admin: a tenant's object, and one of no tenant.
    "admin change of a tenant's agent": Case(admin_change_agent, "admin.change", "success", actor="staff"),
    "admin change of a user": Case(admin_change_user, "admin.change", "success", trail="platform", actor="staff"),
    # The trail itself, and the Python API.
    "audit export": Case(
        lambda w: b"".join(client_for(w.admin).get(w.url("audit/export/?format=jsonl")).streaming_content),  # type: ignore[attr-defined]
        "audit.export",
        "success",
    ),
    "python api": Case(log_action, "budget.change", "success", actor="operator"),
}


@pytest.fixture
def world(request, tenant_a, admin_a, operator_a, viewer_a, agent_a, superuser, token_a) -> World:
    UserFactory.create(username="newcomer")
    for user in (operator_a, admin_a, viewer_a):
        user.set_password(PASSWORD)
        user.save()
    return World(request)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name", list(CASES))
def test_each_action_class_leaves_its_entry(world, name):
    case = CASES[name]
    before = set(AuditEntry.objects.values_list("pk", flat=True))
    case.do(world)
    made = AuditEntry.objects.exclude(pk__in=before).filter(action=case.action)
    trail = made.filter(tenant__isnull=True) if case.trail == "platform" else made.filter(tenant=world.tenant)
    actor = case.actor.strip("'") if case.actor.startswith("'") else getattr(world, case.actor).username
    found = list(trail.values_list("outcome", "actor_label"))
    assert (case.outcome, actor) in found, (
        f"{name}: {found} (every new entry: {list(made.values_list('action', 'outcome', 'tenant_id'))})"
    )
    if case.from_request and case.do is not log_action:  # from a request: its address is recorded
        assert trail.filter(outcome=case.outcome, ip="127.0.0.1").exists(), f"{name}: no address recorded"


def test_every_registered_admin_page_writes_the_audit_trail():
    from django.contrib import admin

    from audit.admin_audit import AuditedAdmin

    assert admin.site.__class__.__name__ == "ConsoleAdminSite"
    unaudited = [m.__name__ for m, a in admin.site._registry.items() if not isinstance(a, AuditedAdmin)]
    assert unaudited == []


def test_a_personal_token_is_recorded_in_each_tenant_of_its_owner(tenant_a, tenant_b, operator_a):
    from tenancy.models import Membership, Role
    from tenancy.services import personal_token_create

    Membership.objects.create(tenant=tenant_b, user=operator_a, role=Role.VIEWER)
    token, _ = personal_token_create(user=operator_a, name="laptop")
    trails = set(
        AuditEntry.objects.filter(action="token.create", resource_id=str(token.pk)).values_list("tenant_id", flat=True)
    )
    assert trails == {tenant_a.pk, tenant_b.pk}
