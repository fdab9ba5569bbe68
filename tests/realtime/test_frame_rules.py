"""The input rules of core/inputs.py on the agent socket and the pages' live socket: a
frame with a control character, a number that overflows, deep nesting or a field its type
does not have gets E10203 and changes nothing; the socket stays open."""

from __future__ import annotations

import json

import pytest
from websockets.sync.client import connect

from fleet.models import Agent, ObservedState
from tests.factories import AgentFactory
from tests.realtime.conftest import frame
from tests.realtime.test_live_pages import live_socket, opened

pytestmark = pytest.mark.redis

BAD_AGENT_FRAMES = [
    ('{"type": "state", "state": "paused", "extra": true}', "Unknown field(s) extra"),
    ('{"type": "ping", "at": 1}', "Unknown field(s) at"),
    ('{"type": "state", "state": "paused\\u0000"}', "NUL"),
    ('{"type": "state", "state": "\\udc00"}', "surrogate"),
    ('{"type": "state", "state": 1e999}', "infinity"),
    ('{"type": ["state"]}', "Send"),
    ("[" * 5000, "deeper"),
]


@pytest.mark.parametrize(("sent", "says"), BAD_AGENT_FRAMES)
def test_a_bad_agent_frame_gets_e10203_and_reports_nothing(server, tenant_a, token_a, sent, says):
    agent = AgentFactory.create(tenant=tenant_a, external_id="worker-1", observed_state=ObservedState.RUNNING)
    headers = {"Authorization": f"Bearer {token_a}"}
    with connect(f"{server.ws_url}/ws/agent?external_id=worker-1", additional_headers=headers) as sock:
        assert json.loads(sock.recv(timeout=5))["type"] == "control"
        sock.send(sent)
        error = json.loads(sock.recv(timeout=5))
        assert (error["type"], error["code"]) == ("error", "E10203")
        assert says in error["message"]
        sock.send('{"type": "ping"}')
        assert json.loads(sock.recv(timeout=5)) == {"type": "pong"}
    assert Agent.objects.get(pk=agent.pk).observed_state == ObservedState.RUNNING


@pytest.mark.parametrize(
    ("sent", "says"),
    [
        ('{"type": "watch", "agents": [], "colour": 1}', "Unknown field(s) colour"),
        ('{"type": "pong", "x": 1}', "Unknown field(s) x"),
        ('{"type": "watch", "agents": ["\\u0000"]}', "NUL"),
        ('{"type": "watch", "agents": [1e999]}', "infinity"),
        ("[" * 5000, "deeper"),
    ],
)
def test_a_bad_live_frame_gets_e10203_and_the_socket_stays_open(server, viewer_a, tenant_a, sent, says):
    with live_socket(server, viewer_a, "view=agents") as ws:
        opened(ws)
        ws.send(sent)
        error = frame(ws)
        assert error["code"] == "E10203"
        assert says in error["message"]
        ws.send(json.dumps({"type": "watch", "agents": []}))
        ws.send(json.dumps({"type": "pong"}))
        ws.send("{}")
        assert frame(ws)["code"] == "E10203"  # the socket still reads and answers


@pytest.mark.parametrize("external_id", ["worker%00", "a/b", "x" * 201])
def test_an_agent_socket_for_an_id_outside_the_rules_names_no_agent(server, tenant_a, token_a, external_id):
    AgentFactory.create(tenant=tenant_a, external_id="worker")
    headers = {"Authorization": f"Bearer {token_a}"}
    with connect(f"{server.ws_url}/ws/agent?external_id={external_id}", additional_headers=headers) as sock:
        error = json.loads(sock.recv(timeout=5))
    assert (error["type"], error["code"]) == ("error", "E10807")
