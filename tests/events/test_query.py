"""Reading the event store (events/selectors.py, events/facade.py): filters, keyset pages,
and a code of its own for each bad filter, E10401-E10407."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from core.errors import InterfaceError
from core.listing import keyset_page, make_cursor
from events import selectors
from events.facade import EventQuery, EventService
from events.models import Event

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(tenant_a, tenant_b, agent_a, agent_b):
    def event(tenant, agent, n, kind="task.completed", severity="info", message="", data=None) -> int:
        made = Event.objects.create(
            tenant=tenant, agent=agent, type=kind, severity=severity, message=message, data=data or {},
            occurred_at=T0 + timedelta(minutes=n),
        )  # fmt: skip
        return int(made.pk)

    return {
        "done1": event(tenant_a, agent_a, 1, data={"task": "crawl-eu"}),
        "error": event(tenant_a, agent_a, 2, kind="task.failed", severity="error", message="Timeout talking to S3"),
        "other": event(tenant_a, None, 3, kind="agent.unresponsive", severity="warning"),
        "done2": event(tenant_a, agent_a, 4),
        "theirs": event(tenant_b, agent_b, 5, data={"task": "crawl-eu"}),
    }


def ids(tenant, **params: Any) -> list[int]:
    found, window = selectors.read_query({k: str(v) for k, v in params.items()}, tenant_id=tenant.pk)
    page, _ = keyset_page(
        selectors.events(tenant.pk, found), window, kind=selectors.KIND, tenant_id=tenant.pk, time_field="occurred_at"
    )
    return [e.pk for e in page]


def test_filters_narrow_one_tenants_events_newest_first(tenant_a, agent_a, store):
    s = store
    assert ids(tenant_a) == [s["done2"], s["other"], s["error"], s["done1"]]
    assert ids(tenant_a, event_type="task.completed,task.failed") == [s["done2"], s["error"], s["done1"]]
    assert ids(tenant_a, agent_id="worker-1") == ids(tenant_a, agent_id=str(agent_a.pk)) == [
        s["done2"], s["error"], s["done1"],
    ]  # fmt: skip
    assert ids(tenant_a, severity="error,warning") == [s["other"], s["error"]]
    assert ids(tenant_a, text="s3") == [s["error"]]  # in the message, any case
    assert ids(tenant_a, text="CRAWL-EU") == [s["done1"]]  # in the data; never another tenant's
    assert ids(tenant_a, start_time="2026-11-30T12:02:00Z", end_time="2026-11-30 12:03") == [s["other"], s["error"]]


def test_pages_follow_the_cursor_to_the_end(tenant_a, store):
    seen, params = [], {"limit": "3"}
    while True:
        found, window = selectors.read_query(params, tenant_id=tenant_a.pk)
        page, after = keyset_page(
            selectors.events(tenant_a.pk, found), window, kind="events", tenant_id=tenant_a.pk, time_field="occurred_at"
        )
        seen += [e.pk for e in page]
        if after is None:
            break
        params = {"limit": "3", "cursor": after}
    assert seen == ids(tenant_a)


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"colour": "red"}, "E10401", "colour"),
        ({"severity": "loud"}, "E10401", "severity"),
        ({"text": "a\x00b"}, "E10401", "text"),
        ({"start_time": "soon"}, "E10402", "start_time"),
        ({"start_time": "2026-12-01", "end_time": "2026-11-01"}, "E10403", "end_time"),
        ({"limit": "5000"}, "E10404", "limit"),
        ({"cursor": "forged"}, "E10406", "cursor"),
    ],
)
def test_each_bad_filter_has_its_code(tenant_a, params, code, field):
    with pytest.raises(InterfaceError) as caught:
        selectors.read_query(params, tenant_id=tenant_a.pk)
    assert caught.value.code == code and caught.value.details == {"field": field}


def test_a_cursor_of_another_tenant_or_of_the_audit_trail_is_refused(tenant_a, tenant_b, store):
    for cursor in (
        make_cursor(kind="events", tenant_id=tenant_b.pk, at=T0, pk=store["theirs"]),
        make_cursor(kind="audit", tenant_id=tenant_a.pk, at=T0, pk=1),
    ):
        with pytest.raises(InterfaceError) as caught:
            selectors.read_query({"cursor": cursor}, tenant_id=tenant_a.pk)
        assert caught.value.code == "E10406"


def run(make) -> Any:
    async def main() -> Any:
        try:
            return await make()
        finally:
            await sync_to_async(connections.close_all)()

    return asyncio.run(main())


@pytest.mark.django_db(transaction=True)
def test_the_python_api_queries_pages_and_refuses_an_unknown_type_or_an_offset_past_the_end(tenant_a, store):
    service = EventService()
    first = run(lambda: service.query_events({"tenant_id": tenant_a.slug, "limit": 2}))
    assert [e.id for e in first.events] == [store["done2"], store["other"]] and first.total == 4 and first.next_cursor
    rest = run(lambda: service.query_events(EventQuery(tenant_id=tenant_a.slug, limit=2, cursor=first.next_cursor)))
    assert [e.id for e in rest.events] == [store["error"], store["done1"]] and rest.next_cursor is None
    for filters, code in (
        ({"tenant_id": tenant_a.slug, "event_type": "no.such.type"}, "E10407"),
        ({"tenant_id": tenant_a.slug, "offset": 4}, "E10405"),
        ({"tenant_id": tenant_a.slug, "colour": "red"}, "E10401"),
        ({"tenant_id": "nobody"}, "E10005"),
    ):
        with pytest.raises(InterfaceError) as caught:
            run(lambda filters=filters: service.query_events(filters))
        assert caught.value.code == code, filters
