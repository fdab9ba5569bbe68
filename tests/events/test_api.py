"""The events query API, ``GET /api/v1/events`` (events/api.py, docs/api.md "The events
API"): who may read which tenant's events, the filters, both ways of paging, and a code
of its own for each bad parameter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client

from core.listing import make_cursor
from events.models import Event
from l10console.api import api
from tenancy.services import personal_token_create, personal_token_revoke, token_create
from tests.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db
URL = "/api/v1/events"
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _event(tenant, agent, n, kind="task.completed", severity="info", message="", data=None) -> int:
    made = Event.objects.create(
        tenant=tenant, agent=agent, type=kind, severity=severity, message=message, data=data or {},
        occurred_at=T0 + timedelta(minutes=n),
    )  # fmt: skip
    return int(made.pk)


@pytest.fixture
def store(tenant_a, tenant_b, agent_a, agent_b):
    return {
        "done1": _event(tenant_a, agent_a, 1, data={"task": "crawl-eu"}),
        "error": _event(tenant_a, agent_a, 2, kind="task.failed", severity="error", message="Timeout talking to S3"),
        "other": _event(tenant_a, None, 3, kind="agent.unresponsive", severity="warning"),
        "done2": _event(tenant_a, agent_a, 4),
        "theirs": _event(tenant_b, agent_b, 5, data={"task": "crawl-eu"}),
    }


def get(token: str | None, query: str | dict[str, Any] = "") -> Any:
    """The answer to ``GET /api/v1/events?<query>`` with ``token``."""
    text = urlencode(query) if isinstance(query, dict) else query
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return Client().get(f"{URL}?{text}" if text else URL, headers=headers)


def ids(token: str, query: str | dict[str, Any] = "") -> list[int]:
    response = get(token, query)
    assert response.status_code == 200, response.content
    return [e["id"] for e in response.json()["events"]]


def refused(response: Any, status: int, code: str) -> dict[str, Any]:
    """The error body of ``response``, after checking its status, code and shape."""
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code, error
    assert {"code", "message", "recoverable", "suggestion"} <= set(error)
    return dict(error)


def personal(user, scopes=None) -> str:
    return personal_token_create(user=user, name="script", scopes=scopes)[1]


# --- who reads what ---------------------------------------------------------------------


def test_a_tenant_token_reads_its_own_tenants_events_and_never_another_tenants(
    tenant_a, agent_a, token_a, token_b, store
):
    answer = get(token_a)
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"total", "total_is_estimate", "next_cursor", "events"}
    assert [e["id"] for e in body["events"]] == [store["done2"], store["other"], store["error"], store["done1"]]
    assert body["total"] == 4 and body["total_is_estimate"] is False and body["next_cursor"] is None
    error = next(e for e in body["events"] if e["id"] == store["error"])
    assert error == {
        "id": store["error"], "timestamp": "2026-11-30T12:02:00Z", "event_type": "task.failed", "severity": "error",
        "agent_id": str(agent_a.pk), "message": "Timeout talking to S3", "data": {},
    }  # fmt: skip
    assert next(e for e in body["events"] if e["id"] == store["other"])["agent_id"] is None
    # Tenant B's token: B's event only, whatever the filters say.
    assert ids(token_b) == [store["theirs"]]
    assert ids(token_b, {"text": "crawl-eu"}) == [store["theirs"]]
    # A tenant token may name its own tenant, by slug or id; any other is as one that does not exist.
    assert ids(token_a, {"tenant_id": "acme"}) == ids(token_a, {"tenant_id": tenant_a.pk}) == ids(token_a)
    other = refused(get(token_a, {"tenant_id": "globex"}), 404, "E10005")
    assert refused(get(token_a, {"tenant_id": "no-such-tenant"}), 404, "E10005") == other


def test_without_a_token_the_answer_is_401_in_the_error_shape(store):
    body = get(None).json()
    assert set(body) == {"error"}
    refused(get(None), 401, "E10001")
    refused(get("l10_nothing_at_all"), 401, "E10002")
    refused(get("l10p_12345678_not-a-real-token-but-long-enough"), 401, "E10002")


def test_a_token_without_the_read_scope_is_refused(tenant_a, admin_a, operator_a, store):
    ingest_only = token_create(tenant=tenant_a, name="ingest only", created_by=admin_a, scopes=["ingest"])[1]
    error = refused(get(ingest_only), 403, "E10008")
    assert "'read'" in error["message"]
    refused(get(personal(operator_a, scopes=["control"]), {"tenant_id": "acme"}), 403, "E10008")


def test_a_revoked_personal_token_is_refused(operator_a, store):
    token, plain = personal_token_create(user=operator_a, name="script", scopes=["read"])
    assert get(plain).status_code == 200
    personal_token_revoke(token=token, by=operator_a)
    refused(get(plain), 401, "E10003")


def test_a_personal_token_reads_a_tenant_its_person_belongs_to(tenant_a, tenant_b, viewer_a, store):
    token = personal(viewer_a, scopes=["read"])  # a viewer may read
    everything = [store["done2"], store["other"], store["error"], store["done1"]]
    assert ids(token, {"tenant_id": "acme"}) == ids(token, {"tenant_id": tenant_a.pk}) == everything
    assert ids(token) == everything  # one tenant: it need not be named
    # A tenant the person does not belong to answers as one that does not exist.
    outside = refused(get(token, {"tenant_id": "globex"}), 404, "E10005")
    assert refused(get(token, {"tenant_id": tenant_b.pk}), 404, "E10005") == outside
    assert refused(get(token, {"tenant_id": "no-such-tenant"}), 404, "E10005") == outside
    assert refused(get(token, {"tenant_id": "999999999"}), 404, "E10005") == outside


def test_a_personal_token_of_an_outsider_is_refused(operator_b, store):
    token = personal(operator_b)
    refused(get(token, {"tenant_id": "acme"}), 404, "E10005")
    assert ids(token, {"tenant_id": "globex"}) == [store["theirs"]]


def test_a_person_of_several_tenants_names_one_and_of_none_gets_404(tenant_a, tenant_b, store):
    both = UserFactory.create(username="two-hats")
    MembershipFactory.create(user=both, tenant=tenant_a)
    MembershipFactory.create(user=both, tenant=tenant_b)
    token = personal(both)
    error = refused(get(token), 400, "E10401")
    assert error["details"] == {"field": "tenant_id"}
    assert ids(token, {"tenant_id": "globex"}) == [store["theirs"]]
    nobody = personal(UserFactory.create(username="loner"))
    refused(get(nobody), 404, "E10005")


# --- filters ----------------------------------------------------------------------------


def test_the_filters_narrow_the_tenants_events(agent_a, token_a, store):
    s = store
    assert ids(token_a, {"event_type": "task.completed,task.failed"}) == [s["done2"], s["error"], s["done1"]]
    assert ids(token_a, "event_type=task.completed&event_type=task.failed") == [s["done2"], s["error"], s["done1"]]
    assert ids(token_a, {"event_type": "agent.unresponsive"}) == [s["other"]]
    by_external = ids(token_a, {"agent_id": "worker-1"})
    assert by_external == ids(token_a, {"agent_id": str(agent_a.pk)}) == [s["done2"], s["error"], s["done1"]]
    assert ids(token_a, {"agent_id": "worker-404"}) == []
    assert ids(token_a, {"severity": "error,warning"}) == [s["other"], s["error"]]
    assert ids(token_a, "severity=error&severity=warning") == [s["other"], s["error"]]
    assert ids(token_a, {"text": "s3"}) == [s["error"]]  # in the message, any case
    assert ids(token_a, {"text": "CRAWL-EU"}) == [s["done1"]]  # in the data; never another tenant's
    window = {"start_time": "2026-11-30T12:02:00Z", "end_time": "2026-11-30T12:03:00+00:00"}
    assert ids(token_a, window) == [s["other"], s["error"]]
    assert ids(token_a, {"start_time": "2026-11-30T13:02:00+01:00"}) == [s["done2"], s["other"], s["error"]]
    answer = get(token_a, {"severity": "info", "agent_id": "worker-1"}).json()
    assert answer["total"] == 2 and [e["id"] for e in answer["events"]] == [s["done2"], s["done1"]]


# --- paging -----------------------------------------------------------------------------


@pytest.fixture
def many(tenant_a, agent_a):
    """23 events, several at the same instant (the cursor breaks ties by id)."""
    return [_event(tenant_a, agent_a, n // 3) for n in range(23)]


def newest_first(pks: list[int]) -> list[int]:
    return list(Event.objects.filter(pk__in=pks).order_by("-occurred_at", "-pk").values_list("pk", flat=True))


def test_pages_follow_next_cursor_to_the_end_without_gaps_or_repeats(token_a, many):
    seen, query, pages = [], {"limit": 5}, 0
    while True:
        body = get(token_a, query).json()
        assert body["total"] == 23 and body["total_is_estimate"] is False
        seen += [e["id"] for e in body["events"]]
        pages += 1
        if body["next_cursor"] is None:
            break
        query = {"limit": 5, "cursor": body["next_cursor"]}
    assert pages == 5 and seen == newest_first(many)
    assert len(set(seen)) == 23


def test_a_cursor_keeps_its_filters_to_the_query_that_follows_it(token_a, tenant_a, agent_a, many):
    failed = [_event(tenant_a, agent_a, n, kind="task.failed") for n in range(4)]
    first = get(token_a, {"event_type": "task.failed", "limit": 3}).json()
    rest = get(token_a, {"event_type": "task.failed", "limit": 3, "cursor": first["next_cursor"]}).json()
    assert [e["id"] for e in first["events"] + rest["events"]] == newest_first(failed)
    assert rest["next_cursor"] is None


def test_offset_pages(token_a, many):
    everything = newest_first(many)
    assert ids(token_a, {"limit": 10, "offset": 0}) == everything[:10]
    assert ids(token_a, {"limit": 10, "offset": 10}) == everything[10:20]
    last = get(token_a, {"limit": 10, "offset": 20}).json()
    assert [e["id"] for e in last["events"]] == everything[20:] and last["next_cursor"] is None
    assert ids(token_a, {"offset": 22}) == everything[22:]
    assert len(ids(token_a)) == 23  # the default page is 50


def test_an_empty_result_is_a_page_not_an_error(tenant_a, token_a):
    body = get(token_a).json()
    assert body == {"total": 0, "total_is_estimate": False, "next_cursor": None, "events": []}


# --- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "code", "field"),
    [
        ("colour=red", "E10401", "colour"),
        ("severity=loud", "E10401", "severity"),
        ("limit=0", "E10401", "limit"),
        ("limit=ten", "E10401", "limit"),
        ("offset=-1", "E10401", "offset"),
        ("limit=5&limit=6", "E10401", "limit"),
        ("tenant_id=acme&tenant_id=acme", "E10401", "tenant_id"),
        ("offset=1&cursor=abc", "E10401", "offset"),
        ("text=" + "x" * 201, "E10401", "text"),
        ("start_time=soon", "E10402", "start_time"),
        ("end_time=2026-13-45T00:00:00Z", "E10402", "end_time"),
        ("start_time=2026-12-01T00:00:00Z&end_time=2026-11-01T00:00:00Z", "E10403", "end_time"),
        ("limit=1001", "E10404", "limit"),
        ("offset=4", "E10405", "offset"),
        ("cursor=forged", "E10406", "cursor"),
        ("event_type=no.such.type", "E10407", "event_type"),
        ("event_type=task.completed,no.such.type", "E10407", "event_type"),
        ("event_type=task.theirs", "E10407", "event_type"),  # a type only another tenant stored
    ],
)
def test_each_bad_parameter_has_its_code(tenant_b, agent_b, token_a, store, query, code, field):
    _event(tenant_b, agent_b, 9, kind="task.theirs")
    error = refused(get(token_a, query), 400, code)
    assert error["details"] == {"field": field}


@pytest.mark.parametrize(
    ("query", "field"),
    [("text=a%00b", "text"), ("agent_id=w%1B[2J", "agent_id"), ("event_type=a%7Fb", "event_type"),
     ("severity=a%C2%85", "severity"), ("c%00lour=1", "a name")],
)  # fmt: skip
def test_control_characters_are_refused_before_the_route_reads_anything(token_a, store, query, field):
    # The input boundary (core/inputs.py, docs/api.md "Input rules") answers a query string
    # under /api/ before the route runs, with the events' code.
    error = refused(get(token_a, query), 400, "E10401")
    assert error["details"] == {"field": field}


def test_a_cursor_of_another_tenant_is_refused(tenant_a, token_a, token_b, many):
    # A cursor tenant A's query gave, and one made for A by hand: neither reads on in B.
    cursor = get(token_a, {"limit": 5}).json()["next_cursor"]
    assert cursor
    refused(get(token_b, {"cursor": cursor}), 400, "E10406")
    made = make_cursor(kind="events", tenant_id=tenant_a.pk, at=T0, pk=many[0])
    refused(get(token_b, {"cursor": made}), 400, "E10406")
    # Nor a cursor of another list (the audit trail) of the same tenant.
    audit = make_cursor(kind="audit", tenant_id=tenant_a.pk, at=T0, pk=many[0])
    refused(get(token_a, {"cursor": audit}), 400, "E10406")


def test_another_method_is_405_with_allow(token_a):
    response = Client().post(URL, "{}", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token_a}")
    refused(response, 405, "E10904")
    assert response["Allow"] == "GET"


# --- the schema -------------------------------------------------------------------------


def test_the_route_is_in_the_openapi_schema_with_its_parameters_and_errors():
    schema = api.get_openapi_schema()
    operation = schema["paths"]["/api/v1/events"]["get"]
    names = {p["name"] for p in operation["parameters"]}
    assert names == {
        "tenant_id", "event_type", "agent_id", "severity", "text", "start_time", "end_time", "limit", "offset",
        "cursor",
    }  # fmt: skip
    assert {200, 400, 401, 403, 404, 429} <= set(operation["responses"])
    assert operation["responses"][400]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")
    assert operation["security"] == [{"ReadBearer": []}]
    out = schema["components"]["schemas"]["EventsOut"]
    assert set(out["required"]) == {"total", "total_is_estimate", "next_cursor", "events"}
