"""Approvals over the pages' socket (dashboard/live.py): the header's count on every page,
the approvals pages' parts, and the asking agent's card."""

from __future__ import annotations

import pytest

from approvals.services import NewRequest, request_create
from realtime import hub
from tests.realtime.conftest import frame
from tests.realtime.test_live_pages import live_socket, opened

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]
PARTS = ["approval-pending", "approval-history", "approval-request"]


def ask(agent, summary="Mail them"):
    return request_create(agent=agent, new=NewRequest("email.send", summary))[0]


def test_every_page_hears_the_count_and_the_approvals_pages_read_their_parts_again(asgi_server, viewer_a, agent_a):
    with (
        live_socket(asgi_server, viewer_a, "view=agents") as listing,
        live_socket(asgi_server, viewer_a, "view=approvals") as inbox,
    ):
        opened(listing), opened(inbox)
        ask(agent_a)
        seq = hub.current_seq(agent_a.tenant_id)
        assert frame(listing, skip=("ping", "refresh", "fragments")) == {"type": "approvals", "seq": seq, "count": 1}
        got = [frame(inbox, skip=("ping", "fragments")) for _ in range(2)]
    assert {"type": "approvals", "seq": seq, "count": 1} in got
    assert {"type": "refresh", "seq": seq, "parts": PARTS} in got


def test_a_page_opened_while_requests_wait_is_told_their_count(asgi_server, viewer_a, agent_a):
    ask(agent_a, "one"), ask(agent_a, "two")
    with live_socket(asgi_server, viewer_a, "view=costs") as ws:
        opened(ws)
        assert frame(ws)["count"] == 2


def test_only_the_asking_agents_page_reads_its_approvals_card_again(asgi_server, viewer_a, agent_a, tenant_a):
    from tests.factories import AgentFactory

    other = AgentFactory.create(tenant=tenant_a, external_id="mailer-2", name="Mailer 2")
    with (
        live_socket(asgi_server, viewer_a, f"view=agent&agent={agent_a.pk}") as mine,
        live_socket(asgi_server, viewer_a, f"view=agent&agent={other.pk}") as theirs,
    ):
        opened(mine), opened(theirs)
        ask(agent_a)
        told = [frame(mine, skip=("ping", "fragments")) for _ in range(2)]
        if not any(f.get("parts") == ["agent-approvals"] for f in told):  # after news for its events card
            told.append(frame(mine, skip=("ping", "fragments")))
        assert frame(theirs, skip=("ping", "fragments"))["type"] == "approvals"
        with pytest.raises((AssertionError, TimeoutError)):
            frame(theirs, timeout=1.0)  # nothing more for the other agent's page
    assert any(f["type"] == "refresh" and f["parts"] == ["agent-approvals"] for f in told), told
