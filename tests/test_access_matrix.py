"""Every route of the console against every member of the cast, generated from the
URLconf and the API schema: a route added without an entry here fails the suite.

Pages: anonymous → login; outsider (tenant B) → 404; below the route's role → 403 and
nothing changes; at the role → allowed. API: no token → 401; tenant B's token never
reads or changes tenant A's rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from audit.models import AuditEntry
from costs.models import Budget, ModelPrice, UsageRecord
from events.models import Event
from fleet.models import Agent, MetricMinute
from l10console.api import api
from tenancy.models import ApiToken, Membership, Role
from tests.conftest import client_for
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

# Routes that need no tenant: name → expectation for an anonymous visitor.
# /readyz: 200 with the suite's services up; /metrics: 200 from the test client's 127.0.0.1.
PUBLIC = {
    "home": 302,
    "login": 200,
    "logout": 405,
    "healthz": 200,
    "readyz": 200,
    "metrics": 200,
    "api_not_found": 404,
    "favicon": 301,
    # The sockets' addresses over plain HTTP; the sockets' own access is tested frame by
    # frame in tests/realtime/.
    "live": 426,
    "events": 426,
    # A person's own tokens: signed-in only, each person sees only their own
    # (tests/tenancy/test_personal_tokens.py).
    "personal_tokens": 302,
    "personal_token_create": 302,
    "personal_token_revoke": 302,
}
# Tenant routes: name → (method, least role).
TENANT = {
    "dashboard:home": ("GET", Role.VIEWER),
    "dashboard:agents": ("GET", Role.VIEWER),
    "dashboard:agent": ("GET", Role.VIEWER),
    "tenancy:tokens": ("GET", Role.ADMIN),
    "tenancy:token_create": ("POST", Role.ADMIN),
    "tenancy:token_revoke": ("POST", Role.ADMIN),
    # A pause here; each action's own role is tested in tests/control/.
    "control:agent": ("POST", Role.OPERATOR),
    "control:bulk_preview": ("GET", Role.OPERATOR),
    "control:bulk_start": ("POST", Role.OPERATOR),
    "control:batches": ("GET", Role.VIEWER),
    "control:batch": ("GET", Role.VIEWER),
    "control:batch_undo": ("POST", Role.OPERATOR),
    # Each change's own rules (the last admin, the audit) are tested in tests/members/.
    "members:list": ("GET", Role.ADMIN),
    "members:add": ("POST", Role.ADMIN),
    "members:role": ("POST", Role.ADMIN),
    "members:remove": ("POST", Role.ADMIN),
    # Each action's own rules (states, audit) are tested in tests/alerts/.
    "alerts:list": ("GET", Role.VIEWER),
    "alerts:detail": ("GET", Role.VIEWER),
    "alerts:acknowledge": ("POST", Role.OPERATOR),
    "alerts:unacknowledge": ("POST", Role.OPERATOR),
    "alerts:snooze": ("POST", Role.OPERATOR),
    "alerts:pause_agent": ("POST", Role.OPERATOR),
    "alerts:ack_link": ("GET", Role.OPERATOR),
    "alerts:silences": ("GET", Role.VIEWER),
    "alerts:silence_add": ("POST", Role.OPERATOR),
    "alerts:silence_expire": ("POST", Role.OPERATOR),
    "alerts:targets": ("GET", Role.ADMIN),
    "alerts:target_add": ("POST", Role.ADMIN),
    "alerts:target_delete": ("POST", Role.ADMIN),
    "alerts:target_approvals": ("POST", Role.ADMIN),
    "alerts:rules": ("GET", Role.VIEWER),
    "alerts:rule_new": ("GET", Role.ADMIN),
    "alerts:rule_edit": ("GET", Role.ADMIN),
    "alerts:rule_toggle": ("POST", Role.ADMIN),
    # Tenant admins read the trail; the export is tested in tests/audit/.
    "audit:trail": ("GET", Role.ADMIN),
    "audit:entry": ("GET", Role.ADMIN),
    "audit:export": ("GET", Role.ADMIN),
    # Every member reads the events; the page's filters and links are tested in tests/events/.
    "events:list": ("GET", Role.VIEWER),
    "events:detail": ("GET", Role.VIEWER),
    # Every member reads the costs; their figures and exports are tested in tests/costs/.
    "costs:page": ("GET", Role.VIEWER),
    "costs:export": ("GET", Role.VIEWER),
    "costs:budget_save": ("POST", Role.ADMIN),
    "costs:budget_remove": ("POST", Role.ADMIN),
    "costs:prices": ("GET", Role.ADMIN),
    "costs:price_correct": ("GET", Role.ADMIN),
    # Every member reads the approvals; operators decide (admins, where a rule says so:
    # tests/approvals/test_views.py); admins keep the rules.
    "approvals:inbox": ("GET", Role.VIEWER),
    "approvals:detail": ("GET", Role.VIEWER),
    "approvals:decide": ("POST", Role.OPERATOR),
    "approvals:rules": ("GET", Role.ADMIN),
    "approvals:rule_add": ("POST", Role.ADMIN),
    "approvals:rule_remove": ("POST", Role.ADMIN),
}
# Prefixes with their own tests: Django admin (tests/tenancy/test_admin.py), the API
# (below), static files.
SEPARATE = ("admin/", "api/v1/", "static/")


def _walk(patterns: list[Any], prefix: str = "", namespace: str = "") -> Iterator[tuple[str, str]]:
    for p in patterns:
        if isinstance(p, URLResolver):
            ns = f"{namespace}{p.namespace}:" if p.namespace else namespace
            yield from _walk(p.url_patterns, prefix + str(p.pattern), ns)
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), f"{namespace}{p.name}" if p.name else ""


def routes() -> list[tuple[str, str]]:
    return [(route, name) for route, name in _walk(get_resolver().url_patterns) if not route.startswith(SEPARATE)]


def test_every_route_is_in_the_matrix():
    unknown = [(route, name) for route, name in routes() if name not in PUBLIC and name not in TENANT]
    assert not unknown, f"routes missing from the access matrix: {unknown}"
    assert all(route.startswith("t/<slug:slug>/") for route, name in routes() if name in TENANT)


def _url(route: str, values: dict[str, Any]) -> str:
    url = "/" + route.strip("^$")
    for key, value in values.items():
        for converter in ("slug", "int", "uuid", "str"):
            url = url.replace(f"<{converter}:{key}>", str(value))
    assert "<" not in url, f"no value for a parameter of {route}"
    return url


@pytest.fixture
def world(tenant_a, admin_a, operator_a, viewer_a, operator_b, agent_a, token_a):
    token = ApiToken.objects.get(tenant=tenant_a)
    from django.utils import timezone

    from control.models import Batch

    batch = Batch.objects.create(tenant=tenant_a, action="pause", created_at=timezone.now())
    UserFactory.create(username="newcomer")  # who members:add adds
    from alerts.models import Alert, AlertRule
    from alerts.notify import ack_token

    rule = AlertRule.objects.create(
        tenant=tenant_a, name="matrix", metric="cpu_percent", threshold=1, created_at=timezone.now(),
        updated_at=timezone.now(),
    )  # fmt: skip
    alert = Alert.objects.create(
        tenant=tenant_a, rule=rule, agent=agent_a, fingerprint="agent:x", state="firing", severity="warning",
        message="m", started_at=timezone.now(), evaluated_at=timezone.now(),
    )  # fmt: skip
    from approvals.models import ApprovalRule
    from approvals.services import NewRequest, request_create

    asked, _ = request_create(agent=agent_a, new=NewRequest("email.send", "Mail 40 customers"))
    return {
        "slug": tenant_a.slug,
        "user_id": viewer_a.pk,
        "token_id": token.pk,
        "agent_id": agent_a.pk,
        "action": "pause",
        "batch_id": batch.pk,
        "alert_id": alert.pk,
        "rule_id": rule.pk,
        "token": ack_token(alert),
        "target_id": 0,
        "silence_id": 0,
        "budget_id": Budget.objects.create(tenant=tenant_a, name="matrix budget", monthly_usd=5).pk,
        "price_id": ModelPrice.objects.create(
            tenant=tenant_a, model="matrix", input_per_mtok=1, output_per_mtok=1, effective_from=timezone.now()
        ).pk,
        "event_id": Event.objects.create(
            tenant=tenant_a, agent=agent_a, type="task.completed", occurred_at=timezone.now()
        ).pk,
        "approval_id": asked.pk,
        "approval_rule_id": ApprovalRule.objects.create(tenant=tenant_a, action="deploy.*", needs_role="admin").pk,
        "entry_id": AuditEntry.objects.create(
            tenant=tenant_a, occurred_at=timezone.now(), actor_label="system", action="agent.pause",
            resource_type="agent", resource_id="worker-1", outcome="success",
        ).pk,
    }  # fmt: skip


def _tokens_state() -> list[tuple[int, Any]]:
    return list(ApiToken.objects.order_by("pk").values_list("pk", "revoked_at"))


def _members_state() -> list[tuple[int, int, str]]:
    return list(Membership.objects.order_by("pk").values_list("tenant_id", "user_id", "role"))


def _alerts_state() -> list[tuple[Any, ...]]:
    from alerts.models import Alert

    return list(Alert.objects.order_by("pk").values_list("pk", "acknowledged_at", "snoozed_until"))


def _budgets_state() -> list[tuple[Any, ...]]:
    return list(Budget.objects.order_by("pk").values_list("pk", "name", "monthly_usd"))


def _approvals_state() -> list[tuple[Any, ...]]:
    from approvals.models import ApprovalRequest, ApprovalRule, ApprovalVote

    return [
        *ApprovalRequest.objects.order_by("pk").values_list("pk", "state", "decided_by_label"),
        *ApprovalVote.objects.order_by("pk").values_list("pk", "request_id"),
        *ApprovalRule.objects.order_by("pk").values_list("pk", "action"),
    ]


ROLE_USERS = {"viewer": "viewer_a", "operator": "operator_a", "admin": "admin_a"}


@pytest.mark.parametrize(("route", "name"), routes(), ids=[n for _, n in routes()])
def test_each_route_enforces_tenant_and_role(request, world, route, name):
    if name in PUBLIC:
        response = client_for(None).get(_url(route, world))
        assert response.status_code == PUBLIC[name]
        return
    method, need = TENANT[name]
    url = _url(route, world)
    # What any of the POST routes takes: a member to add, a token's or target's name, a webhook, a silence,
    # a decision.
    data = {
        "name": "matrix", "username": "newcomer", "role": "viewer", "kind": "webhook", "url": "https://h.example/m",
        "matcher": "team=matrix", "hours": "1", "decision": "approve",
    }  # fmt: skip

    def call(user: Any) -> Any:
        client = client_for(user)
        return client.post(url, data) if method == "POST" else client.get(url)

    before = (
        _tokens_state(), Agent.objects.count(), _members_state(), _alerts_state(), _budgets_state(), _approvals_state()
    )  # fmt: skip
    anonymous = call(None)
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]
    assert call(request.getfixturevalue("operator_b")).status_code == 404
    for role_name, fixture in ROLE_USERS.items():
        role = Role(role_name)
        if not role.allows(need):
            assert call(request.getfixturevalue(fixture)).status_code == 403, f"{role_name} on {name}"
    after = (
        _tokens_state(), Agent.objects.count(), _members_state(), _alerts_state(), _budgets_state(), _approvals_state()
    )  # fmt: skip
    assert after == before, "a refused request changed something"
    allowed = call(request.getfixturevalue(ROLE_USERS[need.value]))
    assert allowed.status_code in (200, 201, 302), f"{need} on {name}: {allowed.status_code}"


# --- the API ---------------------------------------------------------------------------

NOW = datetime.now(UTC).isoformat()
# Path → a body that would be valid for tenant A's agent "worker-1".
API_BODIES: dict[str, dict[str, Any]] = {
    "/api/v1/ingest/register": {"external_id": "worker-1", "name": "hijacked", "labels": {"owner": "b"}},
    "/api/v1/ingest/agents/{external_id}/heartbeat": {"state": "error", "metrics": {"cpu_percent": 99.0}},
    "/api/v1/ingest/metrics": {"samples": [{"external_id": "worker-1", "at": NOW, "cpu_percent": 99.0}]},
    "/api/v1/ingest/events": {"events": [{"external_id": "worker-1", "type": "task.completed", "at": NOW}]},
    "/api/v1/ingest/usage": {"records": [{"external_id": "worker-1", "model": "gpt-4o", "input_tokens": 9, "at": NOW}]},
}


def api_operations() -> list[tuple[str, str]]:
    schema = api.get_openapi_schema()
    return [(path, method.upper()) for path, ops in schema["paths"].items() for method in ops]


# Control routes (personal tokens, the user's role): path → (least role, body).
CONTROL_ROUTES: dict[str, tuple[Role, dict[str, Any]]] = {
    "/api/v1/agents/{agent_id}/pause": (Role.OPERATOR, {"reason": "matrix"}),
    "/api/v1/agents/{agent_id}/resume": (Role.OPERATOR, {}),
    "/api/v1/agents/{agent_id}/stop": (Role.ADMIN, {"reason": "matrix"}),
    "/api/v1/agents/{agent_id}/restart": (Role.ADMIN, {}),
    "/api/v1/agents/{agent_id}/quota": (Role.ADMIN, {"quota_type": "tokens", "new_limit": 100}),
}
# Read routes (a tenant token with the read scope, or a personal one naming a tenant of
# its person's): path → the key of the answer's list of rows.
READ_ROUTES: dict[str, str] = {
    "/api/v1/events": "events",
}


# The approvals API (its rules: tests/approvals/test_api.py, tests/approvals/test_agent_api.py):
# path → who calls it ("agent": a tenant's token, "person": a personal one) and a body
# that would be valid for tenant A's request of agent "worker-1".
APPROVAL_ROUTES: dict[str, tuple[str, dict[str, Any]]] = {
    "/api/v1/ingest/agents/{external_id}/approvals": (
        "agent",
        {"action": "email.send", "summary": "hijack", "key": "k-1"},
    ),
    "/api/v1/ingest/agents/{external_id}/approvals/{approval_id}": ("agent", {}),
    "/api/v1/approvals": ("person", {}),
    "/api/v1/approvals/{approval_id}/approve": ("person", {"comment": "hijack"}),
    "/api/v1/approvals/{approval_id}/reject": ("person", {"comment": "hijack"}),
}


def test_every_api_route_is_in_the_matrix():
    assert {path for path, _ in api_operations()} == (
        set(API_BODIES) | set(CONTROL_ROUTES) | set(READ_ROUTES) | set(APPROVAL_ROUTES)
    )


def _a_rows(tenant: Any) -> tuple[Any, ...]:
    agent = Agent.objects.get(tenant=tenant, external_id="worker-1")
    return (
        agent.name,
        agent.labels,
        agent.observed_state,
        agent.last_heartbeat_at,
        MetricMinute.objects.filter(tenant=tenant).count(),
        Event.objects.filter(tenant=tenant).count(),
        UsageRecord.objects.filter(tenant=tenant).count(),
    )


@pytest.mark.parametrize(("path", "method"), [op for op in api_operations() if op[0] in API_BODIES])
def test_each_api_route_needs_a_token_and_keeps_to_its_tenant(client, tenant_a, agent_a, token_b, path, method):
    url = path.replace("{external_id}", agent_a.external_id)
    body = json.dumps(API_BODIES[path])
    before = _a_rows(tenant_a)
    anonymous = client.generic(method, url, body, content_type="application/json")
    assert anonymous.status_code == 401
    as_b = client.generic(method, url, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token_b}")
    assert as_b.status_code in (200, 201, 404), as_b.content
    assert _a_rows(tenant_a) == before


def _control_state(agent: Any) -> tuple[Any, ...]:
    agent.refresh_from_db()
    return agent.desired_state, agent.version, agent.quotas


@pytest.mark.redis
@pytest.mark.parametrize("path", list(CONTROL_ROUTES))
def test_each_control_route_needs_a_personal_token_and_the_role(client, request, tenant_a, agent_a, token_a, path):
    from tenancy.services import personal_token_create

    need, body = CONTROL_ROUTES[path]
    # From a state where the action changes something.
    start = {"/resume": "paused", "/restart": "stopped"}.get(path[path.rindex("/") :])
    if start:
        Agent.objects.filter(pk=agent_a.pk).update(desired_state=start)
    url = path.replace("{agent_id}", str(agent_a.pk))

    def call(token: str | None) -> Any:
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
        return client.post(url, json.dumps(body), content_type="application/json", **headers)

    def personal(fixture: str) -> str:
        return personal_token_create(user=request.getfixturevalue(fixture), name="matrix")[1]

    before = _control_state(agent_a)
    assert call(None).status_code == 401
    assert call(token_a).status_code == 401  # an agents' token is not a person's
    outsider = call(personal("operator_b"))
    assert outsider.status_code == 404 and outsider.json()["error"]["code"] == "E10101"
    for role_name, fixture in ROLE_USERS.items():
        if not Role(role_name).allows(need):
            refused = call(personal(fixture))
            assert refused.status_code == 403, f"{role_name} on {path}"
            assert refused.json()["error"]["code"] == "E10004"
    assert _control_state(agent_a) == before, "a refused request changed something"
    allowed = call(personal(ROLE_USERS[need.value]))
    assert allowed.status_code == 200, allowed.content
    assert allowed.json()["status"] == "success"
    assert _control_state(agent_a) != before


@pytest.mark.parametrize("path", list(READ_ROUTES))
def test_each_read_route_needs_a_read_token_and_keeps_to_its_tenant(
    client, tenant_a, agent_a, token_a, token_b, viewer_a, operator_b, path
):
    from django.utils import timezone

    from tenancy.services import personal_token_create

    Event.objects.create(tenant=tenant_a, agent=agent_a, type="task.completed", occurred_at=timezone.now())
    rows = READ_ROUTES[path]

    def call(token: str | None, **query: str) -> Any:
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
        return client.get(path, query, **headers)

    def personal(user: Any) -> str:
        return personal_token_create(user=user, name="matrix", scopes=["read"])[1]

    assert call(None).status_code == 401
    assert len(call(token_a).json()[rows]) == 1
    assert len(call(personal(viewer_a), tenant_id=tenant_a.slug).json()[rows]) == 1
    # Tenant B's token reads B's rows only, and naming A is as naming no tenant at all.
    as_b = call(token_b)
    assert as_b.status_code == 200 and as_b.json()[rows] == []
    for token in (token_b, personal(operator_b)):
        refused = call(token, tenant_id=tenant_a.slug)
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "E10005"


def _approvals_of(tenant: Any) -> list[tuple[Any, ...]]:
    from approvals.models import ApprovalRequest

    rows = ApprovalRequest.objects.filter(tenant=tenant).order_by("pk")
    return list(rows.values_list("pk", "key", "summary", "state", "decided_by_label"))


@pytest.mark.parametrize(("path", "method"), [op for op in api_operations() if op[0] in APPROVAL_ROUTES])
def test_each_approvals_api_route_needs_a_token_and_keeps_to_its_tenant(
    client, tenant_a, agent_a, agent_b, token_b, operator_b, path, method
):
    from approvals.services import NewRequest, request_create
    from tenancy.services import personal_token_create

    asked, _ = request_create(agent=agent_a, new=NewRequest("email.send", "Mail 40 customers", key="k-1"))
    who, body = APPROVAL_ROUTES[path]
    url = path.replace("{external_id}", agent_a.external_id).replace("{approval_id}", str(asked.pk))
    before = _approvals_of(tenant_a)

    def call(token: str | None) -> Any:
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
        if method == "GET":
            return client.get(url, **headers)
        return client.generic(method, url, json.dumps(body), content_type="application/json", **headers)

    assert call(None).status_code == 401
    # Tenant B's agent (also "worker-1") or B's operator: never A's request, read or changed.
    theirs = token_b if who == "agent" else personal_token_create(user=operator_b, name="matrix")[1]
    as_b = call(theirs)
    assert as_b.status_code in (200, 201, 404), as_b.content
    assert str(asked.pk) not in as_b.content.decode()
    assert _approvals_of(tenant_a) == before
