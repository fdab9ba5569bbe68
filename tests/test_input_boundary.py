"""The one input boundary (core/inputs.py) at every way in that people use: query strings,
forms, the control API and the Django admin. Each probe that once answered 500 gets its
E10xxx code here, and Hypothesis drives every form and filter with arbitrary text: the
answer is a 2xx or 3xx, or an error that carries an E10xxx code, never a 500, and a refusal
stores nothing. (The ingest API has its own table in tests/ingest/test_ingest_api.py, the
socket frames theirs below, and tests/test_api_schema.py runs Schemathesis on the API.)"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.models import AuditEntry
from fleet.models import Agent
from tenancy.models import ApiToken, Membership, PersonalToken, Role
from tenancy.services import personal_token_create
from tests.conftest import client_for
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db

CODE = re.compile(r"E10\d{3}")
# Text as people and programs send it: anything, and more often the characters that hurt.
NASTY = st.sampled_from(["\x00", "\x01", "\x1f", "\x7f", "\x85", "\t", "\n", "\r", "__", "=", "!=", "(", "%", "'"])
TEXT = st.lists(st.one_of(st.text(max_size=8), NASTY), max_size=8).map("".join)
FUZZ = settings(max_examples=30)  # the suite's profile (tests/conftest.py) does the rest


def stored() -> tuple[int, ...]:
    """What a refusal must leave as it was."""
    return (
        AuditEntry.objects.exclude(action__startswith="auth.").count(),  # signing in is not the refused change
        ApiToken.objects.count(),
        PersonalToken.objects.count(),
        sum(Agent.objects.values_list("version", flat=True)),
    )


def code_of(response: Any) -> str | None:
    found = CODE.search(response.content.decode(errors="replace"))
    return found.group() if found else None


def assert_answered(response: Any) -> None:
    """A 2xx or 3xx, or a 4xx that names its E10xxx code; never a 5xx."""
    assert response.status_code < 500, response.content[:500]
    if response.status_code >= 400:
        assert code_of(response), (response.status_code, response.content[:500])


@pytest.fixture
def agent(tenant_a):
    return AgentFactory.create(tenant=tenant_a, external_id="worker-1", labels={"team": "search"})


# --- each probe, its code ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "code"),
    [
        ("/t/{slug}/agents/", {"q": "crawl\x00er"}, "E10103"),
        ("/t/{slug}/agents/", {"labels": "team=se\x00arch"}, "E10103"),
        ("/t/{slug}/agents/", {"state": "\x00"}, "E10103"),
        ("/t/{slug}/agents/", {"sort": "name\x00"}, "E10103"),
        ("/t/{slug}/agents/", {"page": "1\x00"}, "E10103"),
        ("/t/{slug}/agents/", {"q\x00": "x"}, "E10103"),
        ("/t/{slug}/", {"range": "1h\x00"}, "E10103"),
        ("/t/{slug}/agents/{agent}/", {"range": "\x1b[31m"}, "E10103"),
        ("/t/{slug}/control/bulk/", {"action": "pause", "selector": "team=a\x00"}, "E10312"),
        ("/t/{slug}/control/bulk/", {"action": "pause\x00", "selector": "team=a"}, "E10313"),
        ("/admin/fleet/agent/", {"q": "x\x00"}, "E10905"),
    ],
)
def test_a_control_character_in_a_query_string_gets_its_code(superuser, tenant_a, agent, path, params, code):
    Membership.objects.create(user=superuser, tenant=tenant_a, role=Role.ADMIN)
    before = stored()
    response = client_for(superuser).get(path.format(slug=tenant_a.slug, agent=agent.pk), params)
    assert response.status_code == 400, response.content[:300]
    assert code_of(response) == code
    assert "Nothing was changed" in response.content.decode()
    assert stored() == before


@pytest.mark.parametrize(
    ("action", "form", "code"),
    [
        ("pause", {"reason": "why\x00"}, "E10310"),
        ("pause", {"reason": "ok", "minutes": "5\x00"}, "E10311"),
        ("pause", {"reason": "ok", "mode": "now\x00"}, "E10311"),
        ("stop", {"reason": "\x07bell"}, "E10310"),
        ("quota", {"reason": "ok", "quota_type": "tokens", "new_limit": "1\x00"}, "E10303"),
        ("pause", {"reason": "ok", "idempotency_key": "k\x00"}, "E10310"),
    ],
)
def test_a_control_character_in_a_control_form_gets_its_code_and_changes_nothing(
    admin_a, tenant_a, agent, action, form, code
):
    before = stored()
    response = client_for(admin_a).post(f"/t/{tenant_a.slug}/agents/{agent.pk}/control/{action}/", form)
    assert response.status_code == 400
    assert code_of(response) == code
    assert stored() == before


def test_a_reason_may_span_lines(admin_a, tenant_a, agent):
    response = client_for(admin_a).post(
        f"/t/{tenant_a.slug}/agents/{agent.pk}/control/pause/", {"reason": "line one\r\n\tline two"}
    )
    assert response.status_code == 302
    agent.refresh_from_db()
    assert agent.desired_state == "paused"
    assert agent.pause_reason == "line one\r\n\tline two"


@pytest.mark.parametrize(
    ("path", "form"),
    [
        ("/t/{slug}/settings/tokens/new/", {"name": "ci\x00"}),
        ("/account/tokens/new/", {"name": "laptop\x00"}),
        ("/t/{slug}/control/bulk/start/", {"action": "pause", "selector": "team=search", "reason": "x\x00"}),
    ],
)
def test_a_control_character_in_any_other_form_is_refused_before_it_is_stored(admin_a, tenant_a, agent, path, form):
    before = stored()
    response = client_for(admin_a).post(path.format(slug=tenant_a.slug), form)
    assert response.status_code == 400
    assert code_of(response)
    assert stored() == before


def test_a_control_character_at_sign_in_is_refused_and_counts_as_no_attempt(admin_a):
    response = Client().post("/login/", {"username": "adm\x00in", "password": "x"})
    assert response.status_code == 400
    assert code_of(response) == "E10905"


def test_the_control_api_refuses_control_characters_with_its_own_codes(admin_a, tenant_a, agent):
    token = personal_token_create(user=admin_a, name="cli")[1]
    before = stored()
    for body, code in [
        ({"reason": "why\x00"}, "E10310"),
        ({"reason": "\ud800"}, "E10310"),
        ({"reason": "ok", "mode": "now\x00"}, "E10311"),
    ]:
        response = Client().post(
            f"/api/v1/agents/{agent.pk}/pause",
            data=json.dumps(body),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
        assert response.status_code == 422, response.content
        assert response.json()["error"]["code"] == code
    assert stored() == before


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "/api/v1/ingest/metrics"), ("put", "/api/v1/agents/{agent}/pause"), ("delete", "/api/v1/ingest/register")],
)
def test_a_wrong_method_on_an_api_route_answers_in_the_error_shape(agent, method, path):
    response = getattr(Client(), method)(path.format(agent=agent.pk))
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert response.json()["error"]["code"] == "E10904"


def test_a_timestamp_before_year_one_never_reaches_the_agents_page(token_a, admin_a, tenant_a, agent):
    # Once stored, such a row made the agent's page and the admin lists fail.
    body = {"samples": [{"external_id": "worker-1", "at": "0001-01-01T00:30:00+01:00", "cpu_percent": 1.0}]}
    response = Client().post(
        "/api/v1/ingest/metrics",
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token_a}",
    )
    assert response.json()["error"]["code"] == "E10809"
    assert client_for(admin_a).get(f"/t/{tenant_a.slug}/agents/{agent.pk}/").status_code == 200


# --- Hypothesis: arbitrary text into every form and filter -----------------------------


@FUZZ
@given(q=TEXT, labels=TEXT, state=TEXT, sort=TEXT, page=TEXT, pending=TEXT)
def test_any_list_filter_is_answered(viewer_a, tenant_a, agent, q, labels, state, sort, page, pending):
    client = client_for(viewer_a)
    params = {"q": q, "labels": labels, "state": state, "sort": sort, "page": page, "pending": pending}
    response = client.get(f"/t/{tenant_a.slug}/agents/", params)
    assert_answered(response)
    response = client.get(f"/t/{tenant_a.slug}/agents/", params, headers={"HX-Request": "true"})
    assert_answered(response)


@FUZZ
@given(rng=TEXT, name=TEXT)
def test_any_chart_range_is_answered(viewer_a, tenant_a, agent, rng, name):
    client = client_for(viewer_a)
    assert_answered(client.get(f"/t/{tenant_a.slug}/", {"range": rng, name: rng}))
    assert_answered(client.get(f"/t/{tenant_a.slug}/agents/{agent.pk}/", {"range": rng}))


@FUZZ
@given(
    action=st.sampled_from(["pause", "resume", "stop", "restart", "quota"]),
    reason=TEXT,
    minutes=TEXT,
    mode=TEXT,
    quota_type=TEXT,
    new_limit=TEXT,
    period=TEXT,
    key=TEXT,
)
def test_any_control_form_is_answered_and_a_refusal_changes_nothing(
    admin_a, tenant_a, agent, action, reason, minutes, mode, quota_type, new_limit, period, key
):
    form = {
        "reason": reason,
        "minutes": minutes,
        "mode": mode,
        "quota_type": quota_type,
        "new_limit": new_limit,
        "period": period,
        "idempotency_key": key,
    }
    version = Agent.objects.get(pk=agent.pk).version
    response = client_for(admin_a).post(f"/t/{tenant_a.slug}/agents/{agent.pk}/control/{action}/", form)
    assert_answered(response)
    if response.status_code == 400:
        assert Agent.objects.get(pk=agent.pk).version == version


@FUZZ
@given(action=TEXT, selector=TEXT, agents=st.lists(TEXT, max_size=3), reason=TEXT)
def test_any_bulk_selection_is_answered(operator_a, tenant_a, agent, action, selector, agents, reason):
    client = client_for(operator_a)
    query = {"action": action, "selector": selector, "agent": agents}
    assert_answered(client.get(f"/t/{tenant_a.slug}/control/bulk/", query))
    before = stored()
    response = client.post(f"/t/{tenant_a.slug}/control/bulk/start/", {**query, "reason": reason})
    assert_answered(response)
    if response.status_code >= 400:
        assert stored() == before


@FUZZ
@given(name=TEXT, days=TEXT, scope=TEXT)
def test_any_token_form_is_answered_and_a_refusal_stores_nothing(admin_a, tenant_a, name, days, scope):
    client = client_for(admin_a)
    for path in (f"/t/{tenant_a.slug}/settings/tokens/new/", "/account/tokens/new/"):
        before = stored()
        form = {"name": name, "expires_in_days": days, "scopes": [scope], "scopes_chosen": "1"}
        response = client.post(path, form)
        assert_answered(response)
        if response.status_code >= 400:
            assert stored() == before


@FUZZ
@given(username=TEXT, password=TEXT, next_url=TEXT)
def test_any_sign_in_is_answered(admin_a, username, password, next_url):
    response = Client().post("/login/", {"username": username, "password": password, "next": next_url})
    assert_answered(response)
