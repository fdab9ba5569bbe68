"""The events page (events/views.py): every member of the tenant reads its events, the
URL holds the filters, pages follow by cursor, bad filters say what is wrong, and an
event's detail links to its agent, its alert and its audit entries."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from html import unescape

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from events.models import Event
from tests.conftest import client_for

pytestmark = pytest.mark.django_db
URL = "/t/acme/events/"


@pytest.fixture
def store(tenant_a, tenant_b, agent_a, agent_b):
    now = timezone.now()

    def event(tenant, agent, minutes_ago, kind="task.completed", severity="info", message="", data=None) -> Event:
        return Event.objects.create(
            tenant=tenant, agent=agent, type=kind, severity=severity, message=message, data=data or {},
            occurred_at=now - timedelta(minutes=minutes_ago),
        )  # fmt: skip

    return {
        "old": event(tenant_a, agent_a, 180, message="crawl finished", data={"task": "crawl-eu"}),
        "failed": event(tenant_a, agent_a, 30, kind="task.failed", severity="error", message="Timeout talking to S3"),
        "quiet": event(tenant_a, None, 20, kind="agent.unresponsive", severity="warning", message="No heartbeat"),
        "new": event(tenant_a, agent_a, 1, message="crawl finished"),
        "theirs": event(tenant_b, agent_b, 2, message="secret of globex"),
    }


def shown(response) -> list[int]:
    return [int(n) for n in re.findall(r'data-event-id="(\d+)"', response.content.decode())]


def test_a_viewer_reads_the_tenants_events_newest_first_and_never_anothers(viewer_a, store):
    response = client_for(viewer_a).get(URL)
    assert response.status_code == 200
    s = store
    assert shown(response) == [s["new"].pk, s["quiet"].pk, s["failed"].pk, s["old"].pk]
    body = response.content.decode()
    assert "secret of globex" not in body
    assert "4 events." in body
    assert ">Events</a>" in body  # the section's tab


def test_the_url_holds_the_filters_and_the_form_shows_them(viewer_a, store):
    s = store
    client = client_for(viewer_a)
    both = client.get(URL, {"event_type": ["task.failed", "agent.unresponsive"]})
    assert shown(both) == [s["quiet"].pk, s["failed"].pk]
    assert '<option value="task.failed" selected>' in both.content.decode()
    assert shown(client.get(URL, {"severity": ["error", "critical"]})) == [s["failed"].pk]
    assert shown(client.get(URL, {"agent_id": "worker-1", "text": "CRAWL"})) == [s["new"].pk, s["old"].pk]
    assert shown(client.get(URL, {"text": "crawl-eu"})) == [s["old"].pk]  # in the data
    lately = client.get(URL, {"range": "1h"})
    assert shown(lately) == [s["new"].pk, s["quiet"].pk, s["failed"].pk]
    assert '<option value="1h" selected>' in lately.content.decode()
    nothing = client.get(URL, {"event_type": "never.seen"})  # on the page, an empty answer
    assert nothing.status_code == 200 and "No event matches these filters" in nothing.content.decode()


def test_pages_follow_by_cursor_without_overlap(viewer_a, store):
    client = client_for(viewer_a)
    first = client.get(URL, {"limit": "2"})
    older = re.search(r'href="\?([^"]+)" data-testid="older"', first.content.decode())
    assert older is not None
    second = client.get(URL + "?" + unescape(older.group(1)))
    s = store
    assert shown(first) == [s["new"].pk, s["quiet"].pk]
    assert shown(second) == [s["failed"].pk, s["old"].pk]
    assert "data-tail=" in first.content.decode() and "data-tail=" not in second.content.decode()


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"start_time": "yesterday-ish"}, "E10402"),
        ({"start_time": "2026-11-30T12:00:00Z", "end_time": "2026-11-30T11:00:00Z"}, "E10403"),
        ({"limit": "5000"}, "E10404"),
        ({"offset": "900"}, "E10405"),
        ({"cursor": "forged"}, "E10406"),
        ({"range": "1y"}, "E10401"),
        ({"range": "1h", "start_time": "2026-11-30T12:00:00Z"}, "E10401"),
        ({"colour": "red"}, "E10401"),
        ({"text": "a\x00b"}, "E10401"),
    ],
)
def test_a_bad_filter_is_a_400_that_says_what_is_wrong(viewer_a, store, params, code):
    response = client_for(viewer_a).get(URL, params)
    assert response.status_code == 400
    assert code in response.content.decode()
    assert not shown(response)


def test_a_cursor_of_another_tenant_is_refused(viewer_a, operator_b, store):
    # Two events of Globex's, so that its first page of one has a next cursor.
    Event.objects.create(tenant=store["theirs"].tenant, type="x", occurred_at=timezone.now() - timedelta(hours=1))
    theirs = client_for(operator_b).get("/t/globex/events/", {"limit": "1"})
    cursor = re.search(r"cursor=([^&\"]+)", theirs.content.decode())
    assert cursor is not None
    response = client_for(viewer_a).get(URL + "?cursor=" + cursor.group(1))
    assert response.status_code == 400 and "E10406" in response.content.decode()


def test_the_live_tail_is_told_the_pages_filters(viewer_a, agent_a, store):
    client = client_for(viewer_a)
    page = client.get(URL, {"agent_id": "worker-1", "severity": "error", "event_type": "task.failed", "text": "S3"})
    tail = re.search(r'data-tail="([^"]+)"', page.content.decode())
    assert tail is not None
    assert json.loads(unescape(tail.group(1))) == {
        "types": ["task.failed"], "agents": [str(agent_a.pk)], "severities": ["error"], "text": "s3", "end": None,
    }  # fmt: skip
    past = client.get(URL, {"end_time": (timezone.now() - timedelta(minutes=5)).isoformat()})
    assert "data-tail=" not in past.content.decode()  # a range that has ended gets nothing new
    unknown = re.search(r'data-tail="([^"]+)"', client.get(URL, {"agent_id": "nobody"}).content.decode())
    assert unknown is not None and json.loads(unescape(unknown.group(1)))["agents"] == ["none"]


def test_an_events_detail_links_to_its_agent_alert_and_audit_entry(admin_a, viewer_a, agent_a, tenant_a):
    entry = AuditEntry.objects.create(
        tenant=tenant_a, occurred_at=timezone.now(), actor_label="oscar", action="agent.pause",
        resource_type="agent", resource_id=str(agent_a.pk), outcome="success",
    )  # fmt: skip
    paused = Event.objects.create(
        tenant=tenant_a, agent=agent_a, type="control.pause", occurred_at=timezone.now(),
        data={"audit_id": entry.pk, "by": "oscar"},
    )  # fmt: skip
    fired = Event.objects.create(
        tenant=tenant_a, agent=agent_a, type="alert.firing", occurred_at=timezone.now(), data={"alert_id": 77}
    )
    as_admin = client_for(admin_a).get(f"{URL}{paused.pk}/").content.decode()
    assert f'href="/t/acme/agents/{agent_a.pk}/"' in as_admin
    assert f'href="/t/acme/audit/{entry.pk}/"' in as_admin
    assert 'data-testid="event-audit-around"' in as_admin
    assert "&quot;by&quot;: &quot;oscar&quot;" in as_admin  # the data, indented
    as_viewer = client_for(viewer_a).get(f"{URL}{paused.pk}/").content.decode()
    assert "/audit/" not in as_viewer  # the trail is for admins
    alert = client_for(viewer_a).get(f"{URL}{fired.pk}/").content.decode()
    assert 'href="/t/acme/alerts/77/"' in alert
    partial = client_for(viewer_a).get(f"{URL}{fired.pk}/", headers={"HX-Request": "true"})
    assert partial.status_code == 200 and "<html" not in partial.content.decode()
    assert 'data-testid="event-detail"' in partial.content.decode()


def test_another_tenants_event_is_not_found(viewer_a, store):
    assert client_for(viewer_a).get(f"{URL}{store['theirs'].pk}/").status_code == 404
    assert client_for(viewer_a).get(f"/t/globex/events/{store['theirs'].pk}/").status_code == 404


def test_the_page_reads_a_fixed_number_of_queries_whatever_its_events(viewer_a, tenant_a, agent_a, store,
                                                                     django_assert_max_num_queries):  # fmt: skip
    client = client_for(viewer_a)
    client.get(URL)  # the session and caches
    Event.objects.bulk_create(
        Event(tenant=tenant_a, agent=agent_a, type="task.completed", occurred_at=timezone.now()) for _ in range(40)
    )
    with django_assert_max_num_queries(12):
        assert len(shown(client.get(URL))) == 44


def test_an_agents_page_links_to_all_its_events(viewer_a, agent_a, store):
    page = client_for(viewer_a).get(f"/t/acme/agents/{agent_a.pk}/").content.decode()
    link = re.search(r'href="([^"]+)" data-testid="all-agent-events"', page)
    assert link is not None
    listed = client_for(viewer_a).get(unescape(link.group(1)))
    assert shown(listed) == [store["new"].pk, store["failed"].pk, store["old"].pk]


def test_an_event_without_a_message_is_summed_up_by_its_data(viewer_a, tenant_a, agent_a):
    Event.objects.create(
        tenant=tenant_a, agent=agent_a, type="task.completed", occurred_at=timezone.now(),
        data={"task": "crawl-eu", "tokens": 120, "ok": True},
    )  # fmt: skip
    page = client_for(viewer_a).get(URL).content.decode()
    assert '<span class="event-msg">ok=true task=crawl-eu tokens=120</span>' in page
