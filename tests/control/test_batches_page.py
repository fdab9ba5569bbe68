"""The batch history of a tenant: who started what, when, how it ended, what undid it."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from control.models import Batch, BatchItem, ItemOutcome
from tests.conftest import client_for
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db


def batch(tenant, user, action: str, outcomes: list[str], *, minutes_ago: int, finished=True, undo_of=None) -> Batch:
    started = timezone.now() - timedelta(minutes=minutes_ago)
    made = Batch.objects.create(
        tenant=tenant, created_by=user, action=action, created_at=started, undo_of=undo_of,
        finished_at=started + timedelta(seconds=5) if finished else None,
    )  # fmt: skip
    for n, outcome in enumerate(outcomes):
        agent = AgentFactory.create(tenant=tenant, external_id=f"b-{made.pk.hex[:6]}-{n}")
        BatchItem.objects.create(batch=made, agent=agent, outcome=outcome)
    return made


def test_the_history_lists_the_tenants_batches_with_their_results_newest_first(
    tenant_a, tenant_b, operator_a, viewer_a, operator_b
):
    paused = batch(tenant_a, operator_a, "pause", ["success", "success", "noop"], minutes_ago=30)
    undo = batch(tenant_a, operator_a, "resume", ["success", "skipped"], minutes_ago=20, undo_of=paused)
    running = batch(tenant_a, None, "resume", ["success", "pending"], minutes_ago=1, finished=False)
    batch(tenant_b, operator_b, "pause", ["success"], minutes_ago=5)  # another tenant's
    page = client_for(viewer_a).get("/t/acme/control/batches/").content.decode()
    rows = re.findall(r'<tr id="batch-([0-9a-f-]+)">(.*?)</tr>', page, re.S)
    assert [r[0] for r in rows] == [str(running.pk), str(undo.pk), str(paused.pk)]
    text = {pk: " ".join(re.sub(r"<[^>]+>", " ", html).split()) for pk, html in rows}
    assert "system" in text[str(running.pk)] and "Running" in text[str(running.pk)]
    assert "1 pending · 1 success" in text[str(running.pk)] or "1 success · 1 pending" in text[str(running.pk)]
    assert "oscar" in text[str(paused.pk)] and "2 success · 1 noop" in text[str(paused.pk)]
    assert f"Undone by batch {str(undo.pk)[:8]}…" in text[str(paused.pk)]
    assert "(undo)" in text[str(undo.pk)] and f"Undoes batch {str(paused.pk)[:8]}…" in text[str(undo.pk)]
    assert "Open · undo…" not in page  # a viewer may not undo; the undone batch is done with
    operated = client_for(operator_a).get("/t/acme/control/batches/").content.decode()
    assert "Open · undo…" not in operated  # its only finished pause was undone already


def test_the_history_pages_back_and_refuses_a_bad_cursor(tenant_a, operator_a):
    for n in range(52):
        batch(tenant_a, operator_a, "pause", [ItemOutcome.SUCCESS], minutes_ago=100 - n)
    client = client_for(operator_a)
    first = client.get("/t/acme/control/batches/").content.decode()
    assert first.count('<tr id="batch-') == 50 and "Open · undo…" in first
    older = re.search(r'href="(\?before=[^"]+)">Older batches', first)
    assert older
    rest = client.get(f"/t/acme/control/batches/{older[1].replace('&amp;', '&')}").content.decode()
    assert rest.count('<tr id="batch-') == 2 and "Older batches" not in rest
    bad = client.get("/t/acme/control/batches/?before=yesterday", follow=True)
    assert "(E10310)" in bad.content.decode() and bad.redirect_chain[-1][0] == "/t/acme/control/batches/"


def test_the_agent_list_links_to_the_history(tenant_a, viewer_a):
    assert 'href="/t/acme/control/batches/">Batches</a>' in client_for(viewer_a).get("/t/acme/agents/").content.decode()
