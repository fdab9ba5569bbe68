"""The Python API's ``WebSocketGateway``: the documented example, and a socket handed over by
another framework's endpoint (a Starlette-shaped websocket object)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from core.errors import InterfaceError
from l10console.services import WebSocketGateway
from realtime import hub
from tests.realtime.conftest import events_socket, frame, subscribe
from tests.test_python_api_examples import BLOCKS, run_example

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]
GATEWAY_BLOCK = next(b for b in BLOCKS if "WebSocketGateway" in b)


class StarletteShapedSocket:
    """The websocket object a Starlette/FastAPI endpoint holds: what the gateway is given."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[str | None] = asyncio.Queue()
        self.outgoing: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.accepted = False

    async def accept(self) -> None:
        self.accepted = True

    async def receive_text(self) -> str:
        text = await self.incoming.get()
        if text is None:
            raise ConnectionError("the client left")  # Starlette raises WebSocketDisconnect
        return text

    async def send_text(self, data: str) -> None:
        await self.outgoing.put(json.loads(data))

    async def close(self, code: int = 1000) -> None:
        await self.outgoing.put({"closed": code})

    async def next(self, skip: tuple[str, ...] = ("ping",)) -> dict[str, Any]:
        while True:
            item = await asyncio.wait_for(self.outgoing.get(), timeout=5)
            if item.get("type") not in skip:
                return item


def run(test: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        try:
            await test()
        finally:
            await hub.close_current()
            await sync_to_async(connections.close_all)()

    asyncio.run(main())


def test_the_documented_example_reaches_a_socket_of_the_agents_tenant(server, tenant_a, token_a, agent_a):
    with events_socket(server, "acme", token=token_a) as ws:
        subscribe(ws, "agent.state.changed")
        printed = run_example(GATEWAY_BLOCK, {"agent_id": str(agent_a.pk)})
        event = frame(ws)
    assert event["topic"] == "agent.state.changed"
    assert event["data"]["agent_id"] == str(agent_a.pk)
    assert event["data"]["state"] == "paused"
    assert printed == [f"Published event {event['seq']}"]


def test_a_handed_over_socket_speaks_the_event_protocol(tenant_a, agent_a):
    async def scenario() -> None:
        gateway = WebSocketGateway()
        await gateway.start()
        socket = StarletteShapedSocket()
        served = asyncio.create_task(gateway.handle_connection(websocket=socket, connection_id="c-1", tenant_id="acme"))
        await socket.incoming.put(json.dumps({"type": "subscribe", "topics": ["agent.state.changed"]}))
        assert (await socket.next())["type"] == "subscribed"
        assert socket.accepted and "c-1" in gateway.connections
        await socket.incoming.put("not json")
        assert (await socket.next())["code"] == "E10203"
        seq = await gateway.broadcast_event(
            topic="agent.state.changed", event_data={"agent_id": str(agent_a.pk), "state": "paused"}
        )
        event = await socket.next()
        assert (event["seq"], event["data"]["state"]) == (seq, "paused")
        await socket.incoming.put(None)
        await asyncio.wait_for(served, timeout=5)
        assert gateway.connections == {}

    run(scenario)


def test_a_handed_over_socket_for_an_unknown_tenant_is_refused(tenant_a):
    async def scenario() -> None:
        gateway = WebSocketGateway()
        socket = StarletteShapedSocket()
        served = asyncio.create_task(
            gateway.handle_connection(websocket=socket, connection_id="c-2", tenant_id="nobody")
        )
        assert (await socket.next())["code"] == "E10202"
        assert await socket.next() == {"closed": 4403}
        await socket.incoming.put(None)
        await asyncio.wait_for(served, timeout=5)

    run(scenario)


@pytest.mark.parametrize(
    "topic, data, says",
    [
        ("agent.exploded", {"agent_id": "x"}, "Unknown topic"),
        ("agent.state.changed", {"state": "paused"}, "Name the tenant"),
        ("agent.state.changed", {"agent_id": "nobody-has-this"}, "Cannot tell which tenant"),
        ("agent.state.changed", {"agent_id": "x", "tenant_id": "no-such-tenant"}, "No tenant"),
    ],
)
def test_broadcast_refuses_what_it_cannot_place(tenant_a, topic, data, says):
    async def scenario() -> None:
        with pytest.raises(InterfaceError) as refused:
            await WebSocketGateway().broadcast_event(topic=topic, event_data=data)
        assert says in refused.value.message

    run(scenario)
