"""Hypothesis drives every ingest route with arbitrary JSON in every field (and arbitrary
bytes as a body): the answer is a 2xx, or an error body with an E10xxx code, never a 500;
and a refused request stores nothing (core/inputs.py, docs/api.md "Input rules")."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from hypothesis import given, settings
from hypothesis import strategies as st

from costs.models import UsageRecord
from events.models import Event
from fleet.models import Agent, MetricMinute
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db

FUZZ = settings(max_examples=60)  # the suite's profile (tests/conftest.py) does the rest
NASTY_TEXT = st.sampled_from(["\x00", "\ud800", "\x1b", "\n", "a/b", "0001-01-01T00:00:00+05:00", "1970-01-01T00:00Z"])
TEXT = st.one_of(st.text(max_size=20), NASTY_TEXT)
NUMBER = st.one_of(st.integers(min_value=-(10**30), max_value=10**30), st.floats(allow_nan=True, allow_infinity=True))
SCALAR = st.one_of(st.none(), st.booleans(), NUMBER, TEXT)
JSON = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3))


def recent() -> str:
    return (datetime.now(UTC) - timedelta(seconds=30)).isoformat()


# A valid item per route; the fuzz replaces, adds or drops its fields.
VALID: dict[str, Any] = {
    "/register": lambda: {"external_id": "worker-1", "name": "Worker", "labels": {"team": "search"}},
    "/agents/worker-1/heartbeat": lambda: {"state": "running", "metrics": {"cpu_percent": 1.0}, "at": recent()},
    "/metrics": lambda: {"samples": [{"external_id": "worker-1", "at": recent(), "tokens": 5}]},
    "/events": lambda: {"events": [{"external_id": "worker-1", "type": "task.done", "at": recent(), "data": {}}]},
    "/usage": lambda: {"records": [{"external_id": "worker-1", "model": "m", "at": recent(), "input_tokens": 1}]},
}


def stored() -> tuple[Any, ...]:
    return (
        list(Agent.objects.order_by("pk").values_list("name", "labels", "observed_state", "last_heartbeat_at")),
        MetricMinute.objects.count(),
        Event.objects.count(),
        UsageRecord.objects.count(),
    )


def item_of(body: dict[str, Any]) -> dict[str, Any]:
    """The object whose fields the fuzz changes: the batch's first item, or the body."""
    for key in ("samples", "events", "records"):
        if key in body:
            return body[key][0]
    return body


def send(token: str, path: str, raw: bytes | str) -> Any:
    return Client().post(
        f"/api/v1/ingest{path}", data=raw, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )


def assert_answered(response: Any, before: tuple[Any, ...]) -> None:
    assert response.status_code < 500, response.content[:500]
    if response.status_code >= 400:
        assert re.fullmatch(r"E10\d{3}", response.json()["error"]["code"]), response.content[:500]
        assert stored() == before


@pytest.fixture
def worker(tenant_a):
    return AgentFactory.create(tenant=tenant_a, external_id="worker-1")


VALUE = st.one_of(NASTY_TEXT, JSON, st.dictionaries(TEXT, NASTY_TEXT, min_size=1, max_size=2))


@pytest.mark.parametrize("path", list(VALID))
@FUZZ
@given(data=st.data())
def test_any_field_of_any_ingest_route_is_answered(token_a, worker, path, data):
    body = VALID[path]()
    item = item_of(body)
    fields = list(item)
    # Mostly the route's own fields get arbitrary values; sometimes unknown ones arrive,
    # sometimes one goes missing.
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        name = data.draw(st.one_of(st.sampled_from(fields), st.sampled_from(fields), TEXT))
        item[name] = data.draw(VALUE)
    if data.draw(st.booleans()) and data.draw(st.booleans()):
        item.pop(data.draw(st.sampled_from(fields)), None)
    before = stored()
    assert_answered(send(token_a, path, json.dumps(body, allow_nan=True)), before)


@pytest.mark.parametrize("path", list(VALID))
@FUZZ
@given(raw=st.one_of(st.binary(max_size=200), st.text(max_size=200), JSON.map(lambda v: json.dumps(v))))
def test_any_body_of_any_ingest_route_is_answered(token_a, worker, path, raw):
    before = stored()
    assert_answered(send(token_a, path, raw), before)


def test_the_fuzz_reaches_past_validation(token_a, worker):
    # The valid skeletons are accepted as they are: the fuzz changes a body that works.
    for path, make in VALID.items():
        response = send(token_a, path, json.dumps(make()))
        assert response.status_code in (200, 201), (path, response.content)
