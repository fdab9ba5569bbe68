"""A page's live socket whose client stops reading, for real: a raw TCP client completes the
handshake of a batch page's socket and never reads again, while the batch's progress
events keep coming in bursts. The tenant's other pages get every event, in order, each burst
before the next is sent; the server holds at most ``OUTBOX_LIMIT`` frames and its transport's
buffer for the stalled one, then drops it with close code 4409, and takes nothing more for
it (docs/operations.md, "Faults")."""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

import pytest
from django.utils import timezone

from control.models import Batch
from realtime import hub
from realtime.sockets import CLOSE_TOO_SLOW, OUTBOX_LIMIT
from tests.conftest import LiveServer, client_for, wait_for
from tests.realtime.conftest import StalledClient, frame, open_sockets, server_hubs
from tests.realtime.test_live_pages import live_socket

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]

# More events at once than a socket's outbox holds: a burst, as a large batch's items or a
# fleet's heartbeats give, must not drop the readers that keep up.
BURST = 4 * OUTBOX_LIMIT
MOST_EVENTS = 20 * BURST  # the stalled socket must be dropped well before this


def server_side(server: LiveServer, client: StalledClient) -> tuple[Any, Any]:
    """The stalled client's consumer (as its hub knows it) and its uvicorn connection."""
    port = client.sock.getsockname()[1]
    [consumer] = [s for h in server_hubs() for s in h.sockets if s.scope["client"][1] == port]
    assert server.server is not None
    connections: list[Any] = list(server.server.server_state.connections)
    [connection] = [c for c in connections if c.client and c.client[1] == port]
    return consumer, connection


def read_frames(sock: socket.socket) -> tuple[list[bytes], int]:
    """Everything the server sent, up to its close frame: (text frames, close code)."""
    sock.settimeout(10)
    data = b""
    texts: list[bytes] = []

    def take(n: int) -> bytes:
        nonlocal data
        while len(data) < n:
            chunk = sock.recv(65536)
            assert chunk, "the server closed the connection without a close frame"
            data += chunk
        out, data = data[:n], data[n:]
        return out

    while True:
        first, second = take(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", take(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", take(8))[0]
        payload = take(length)
        opcode = first & 0x0F
        if opcode == 0x8:
            return texts, struct.unpack("!H", payload[:2])[0]
        if opcode == 0x1:
            texts.append(payload)


def test_a_page_socket_that_stops_reading_is_dropped_and_the_others_get_every_event(
    asgi_server, tenant_a, admin_a, operator_a, viewer_a
):
    batch = Batch.objects.create(tenant=tenant_a, created_by=operator_a, action="pause", created_at=timezone.now())
    query = f"view=batch&batch={batch.pk}"
    cookie = f"sessionid={client_for(viewer_a).cookies['sessionid'].value}"
    stalled = StalledClient(asgi_server, f"/ws/live/acme/?{query}", {"Cookie": cookie, "Origin": asgi_server.url})
    try:
        with live_socket(asgi_server, admin_a, query) as one, live_socket(asgi_server, operator_a, query) as two:
            assert frame(one)["type"] == frame(two)["type"] == "resync"  # no "since": read the parts
            wait_for(lambda: open_sockets() == 3, what="the three pages to register")
            consumer, connection = server_side(asgi_server, stalled)
            # The kernel's buffers for this connection are kept small (a slow mobile link's
            # would be), so the console's own limits are reached after a few thousand
            # frames rather than megabytes.
            connection.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            high_water = connection.transport.get_write_buffer_limits()[1]
            published: list[int] = []
            # What the server holds for the stalled socket, seen each time a frame is queued for it.
            queued: list[int] = []
            buffered: list[int] = []
            put = consumer.put

            def watched_put(text: str) -> None:
                put(text)
                queued.append(len(consumer.outbox))
                buffered.append(connection.transport.get_write_buffer_size())

            consumer.put = watched_put

            def burst() -> None:
                seqs = hub.send_payloads(
                    tenant_a.pk,
                    [hub.encode("control.batch", {"batch_id": str(batch.pk), "done": n}) for n in range(BURST)],
                )
                assert len(seqs) == BURST
                published.extend(seqs)
                # Every reading page gets every event of the burst, in order, before the
                # next burst is sent.
                for ws in (one, two):
                    got = [frame(ws) for _ in seqs]
                    assert [(f["type"], f["seq"]) for f in got] == [("refresh", s) for s in seqs]

            while consumer.hub is not None:
                assert len(published) < MOST_EVENTS, "the stalled socket was never dropped"
                burst()
            # Dropped: out of the hub, its queue freed, the close (4409) waiting for the
            # client to read. Until then its queue filled to its limit, no further, and its
            # transport's buffer stopped at the high-water mark (uvicorn's flow control).
            assert open_sockets() == 2 and consumer.closing and not consumer.outbox
            assert max(queued) == OUTBOX_LIMIT
            assert max(buffered) <= high_water + 1024  # one frame past the mark at most
            held = connection.transport.get_write_buffer_size()
            burst()  # the others go on; nothing more is taken for the dropped one
            assert connection.transport.get_write_buffer_size() <= held  # the kernel may take a little

        # The client reads at last: what the server had sent or buffered, in order, then
        # the close code saying it fell too far behind.
        texts, code = read_frames(stalled.sock)
    finally:
        stalled.close()
    assert code == CLOSE_TOO_SLOW
    frames = [json.loads(t) for t in texts]
    assert frames[0]["type"] == "resync"  # as the others were told on connecting
    got = [f["seq"] for f in frames[1:]]
    assert got == published[: len(got)]  # a prefix of the events, none out of order
    assert 0 < len(got) < len(published) - BURST
