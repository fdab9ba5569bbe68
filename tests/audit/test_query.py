"""Reading the trail (audit/selectors.py, core/listing.py) and the Python API's
AuditService: filters, keyset pages, totals, and a code of its own for each bad input."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from audit import selectors
from audit.facade import AuditQuery, AuditService
from audit.models import AuditEntry
from audit.services import SYSTEM, Actor, Entry, audit_record
from core.errors import InterfaceError
from core.listing import bounded_total, keyset_page, make_cursor

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def entry(tenant, n: int, *, action="agent.pause", resource="worker-1", outcome="success", actor: Actor = SYSTEM):
    made = Entry(action=action, resource_type="agent", resource_id=resource, outcome=outcome)
    return audit_record(tenant_id=tenant.pk, actor=actor, entry=made, at=T0 + timedelta(minutes=n))


@pytest.fixture
def trail(tenant_a, tenant_b, operator_a):
    oscar = Actor(user=operator_a)
    ids = {
        "pause1": entry(tenant_a, 1, actor=oscar),
        "resume": entry(tenant_a, 2, action="agent.resume", actor=oscar),
        "denied": entry(tenant_a, 3, outcome="denied", resource="worker-2"),
        "alert": entry(tenant_a, 4, action="alert.acknowledge", resource="alert-9", actor=oscar),
        "pause2": entry(tenant_a, 5, resource="worker-2"),
        "other": entry(tenant_b, 6),
    }
    return ids


def query(tenant, **params: Any) -> list[int]:
    found, window = selectors.read_query({k: str(v) for k, v in params.items()}, tenant_id=tenant.pk)
    page, _ = keyset_page(
        selectors.entries(tenant.pk, found), window, kind=selectors.KIND, tenant_id=tenant.pk, time_field="occurred_at"
    )
    return [e.pk for e in page]


def test_filters_narrow_one_tenants_trail_newest_first(tenant_a, trail, operator_a):
    t = trail
    assert query(tenant_a) == [t["pause2"], t["alert"], t["denied"], t["resume"], t["pause1"]]
    assert query(tenant_a, actor=operator_a.username.upper()) == [t["alert"], t["resume"], t["pause1"]]
    assert query(tenant_a, action="agent.pause") == [t["pause2"], t["denied"], t["pause1"]]
    assert query(tenant_a, action="agent.*") == [t["pause2"], t["denied"], t["resume"], t["pause1"]]
    assert query(tenant_a, resource_id="worker-2") == [t["pause2"], t["denied"]]
    assert query(tenant_a, outcome="denied") == [t["denied"]]
    assert query(tenant_a, start_time="2026-11-30T12:02:00Z", end_time="2026-11-30 12:04") == [
        t["alert"], t["denied"], t["resume"],
    ]  # fmt: skip
    assert t["other"] not in query(tenant_a)


def test_keyset_pages_walk_the_whole_trail_once(tenant_a, trail):
    seen: list[int] = []
    cursor = ""
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        found, window = selectors.read_query(params, tenant_id=tenant_a.pk)
        page, cursor_next = keyset_page(
            selectors.entries(tenant_a.pk, found), window, kind="audit", tenant_id=tenant_a.pk, time_field="occurred_at"
        )
        seen += [e.pk for e in page]
        if cursor_next is None:
            break
        cursor = cursor_next
    assert seen == query(tenant_a)


def test_entries_at_the_same_instant_are_neither_lost_nor_repeated_across_pages(tenant_a):
    ids = [entry(tenant_a, 0) for _ in range(5)]  # one timestamp: the id breaks the tie
    found, window = selectors.read_query({"limit": "2"}, tenant_id=tenant_a.pk)
    rows = selectors.entries(tenant_a.pk, found)
    first, after = keyset_page(rows, window, kind="audit", tenant_id=tenant_a.pk, time_field="occurred_at")
    _, window = selectors.read_query({"limit": "3", "cursor": after}, tenant_id=tenant_a.pk)
    second, more = keyset_page(rows, window, kind="audit", tenant_id=tenant_a.pk, time_field="occurred_at")
    assert [e.pk for e in first + second] == sorted(ids, reverse=True) and more is None


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"start_time": "yesterday"}, "E10502", "start_time"),
        ({"end_time": "2026-13-40"}, "E10502", "end_time"),
        ({"start_time": "2026-11-30T12:00Z", "end_time": "2026-11-29"}, "E10503", "end_time"),
        ({"limit": "1001"}, "E10504", "limit"),
        ({"limit": "0"}, "E10501", "limit"),
        ({"limit": "ten"}, "E10501", "limit"),
        ({"offset": "-1"}, "E10501", "offset"),
        ({"cursor": "not-a-cursor"}, "E10506", "cursor"),
        ({"outcome": "maybe"}, "E10501", "outcome"),
        ({"colour": "red"}, "E10501", "colour"),
        ({"actor": "x" * 151}, "E10501", "actor"),
        ({"offset": "1", "cursor": "x"}, "E10501", "offset"),
    ],
)
def test_each_bad_filter_has_its_code_and_names_its_field(tenant_a, params, code, field):
    with pytest.raises(InterfaceError) as caught:
        selectors.read_query(params, tenant_id=tenant_a.pk)
    assert caught.value.code == code and caught.value.details == {"field": field}


def test_a_cursor_of_another_tenant_or_list_is_refused(tenant_a, tenant_b, trail):
    theirs = make_cursor(kind="audit", tenant_id=tenant_b.pk, at=T0, pk=trail["other"])
    events = make_cursor(kind="events", tenant_id=tenant_a.pk, at=T0, pk=1)
    tampered = make_cursor(kind="audit", tenant_id=tenant_a.pk, at=T0, pk=1)[:-3] + "abc"
    for cursor in (theirs, events, tampered):
        with pytest.raises(InterfaceError) as caught:
            selectors.read_query({"cursor": cursor}, tenant_id=tenant_a.pk)
        assert caught.value.code == "E10506"


@pytest.mark.postgres
def test_a_large_total_is_an_estimate_that_says_so(tenant_a):
    AuditEntry.objects.bulk_create(
        AuditEntry(
            tenant=tenant_a,
            occurred_at=T0,
            actor_label="system",
            action="agent.pause",
            resource_type="agent",
            resource_id=f"w{n}",
            outcome="success",
        )
        for n in range(60)
    )
    rows = AuditEntry.objects.filter(tenant=tenant_a)
    assert bounded_total(rows, bound=100) == bounded_total(rows) and str(bounded_total(rows)) == "60"
    estimate = bounded_total(rows, bound=20)
    assert not estimate.exact and estimate.value > 20 and str(estimate).startswith("about ")


def run(coro_fn) -> Any:
    async def main() -> Any:
        try:
            return await coro_fn()
        finally:
            await sync_to_async(connections.close_all)()

    return asyncio.run(main())


@pytest.mark.django_db(transaction=True)
def test_the_python_api_logs_and_queries_and_hands_entries_to_a_second_logger(tenant_a, operator_a):
    handed: list[Any] = []

    class Shipper:
        def log(self, record: Any) -> None:
            handed.append(record)

    service = AuditService(audit_logger=Shipper())
    record = run(
        lambda: service.log_action(
            actor=operator_a.username,
            action="budget.change",
            resource_type="budget",
            resource_id="monthly",
            tenant_id=tenant_a.slug,
            actor_ip="2001:db8::1",
            change_delta={"limit": {"from": "10.00", "to": "20.00"}},
        )
    )
    assert handed == [record] and record.actor == operator_a.username and record.actor_ip == "2001:db8::1"
    for n in range(3):
        run(
            lambda n=n: service.log_action(
                actor="system", action="x.y", resource_type="thing", resource_id=str(n), tenant_id=tenant_a.pk
            )
        )
    first = run(lambda: service.query_audit_trail(AuditQuery(tenant_id=tenant_a.slug, limit=3)))
    assert [e.resource_id for e in first.entries] == ["2", "1", "0"] and first.total == 4 and first.next_cursor
    rest = run(
        lambda: service.query_audit_trail(AuditQuery(tenant_id=tenant_a.slug, limit=3, cursor=first.next_cursor))
    )
    assert [e.id for e in rest.entries] == [record.id] and rest.next_cursor is None
    everyone = run(lambda: service.query_audit_trail(AuditQuery(action="budget.change")))
    assert [e.id for e in everyone.entries] == [record.id]
    with pytest.raises(InterfaceError) as caught:
        run(lambda: service.query_audit_trail(AuditQuery(tenant_id=tenant_a.slug, offset=4)))
    assert caught.value.code == "E10505"
    with pytest.raises(InterfaceError) as caught:
        run(lambda: service.query_audit_trail(AuditQuery(tenant_id=tenant_a.slug, cursor=first.next_cursor[:-2])))
    assert caught.value.code == "E10506"


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"action": "Pause Agent"}, "E10507", "action"),
        ({"resource_type": ""}, "E10507", "resource_type"),
        ({"resource_id": "a\x00b"}, "E10507", "resource_id"),
        ({"actor_ip": "300.1.1.1"}, "E10507", "actor_ip"),
        ({"reason": "r" * 501}, "E10507", "reason"),
        ({"change_delta": {"x": float("nan")}}, "E10507", "change_delta"),
        ({"change_delta": ["not", "an", "object"]}, "E10507", "change_delta"),
        ({"outcome": "great"}, "E10507", "outcome"),
        ({"actor": "nobody-here"}, "E10001", None),
        ({"tenant_id": "no-such-tenant"}, "E10005", None),
    ],
)
@pytest.mark.django_db(transaction=True)
def test_log_action_refuses_what_it_cannot_store_and_writes_nothing(tenant_a, fields, code, field):
    base = {
        "actor": "system",
        "action": "agent.pause",
        "resource_type": "agent",
        "resource_id": "w",
        "tenant_id": tenant_a.pk,
    }
    with pytest.raises(InterfaceError) as caught:
        run(lambda: AuditService().log_action(**{**base, **fields}))
    assert caught.value.code == code
    if field:
        assert caught.value.details == {"field": field}
    assert not AuditEntry.objects.exists()
