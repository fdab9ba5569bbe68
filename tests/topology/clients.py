"""A page's live socket as static/js/live.js keeps it, in a thread of the test.

The page remembers the sequence number of the last news it had; when its socket closes
(other than refused: 4401, 4403) it says so and opens a new one after 0.5 s, 1 s, 2 s, …
(at most 15 s, reset once a socket opens), with ``since=<seq>``: the process it lands on
sends what was missed, or ``resync`` and the page reads its parts again over HTTP. Behind a
load balancer the new socket goes to whichever web process is there.
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

FIRST_DELAY = 0.5
MAX_DELAY = 15.0
REFUSED = (4401, 4403)


@dataclass
class Received:
    connection: int  # 1 for the page's first socket, 2 after its first reconnect, …
    frame: dict[str, Any]


@dataclass
class LivePage:
    """``/ws/live/<slug>/?<query>`` opened from a page at ``page_url`` with a session cookie."""

    page_url: str
    slug: str
    query: str
    session: str
    received: list[Received] = field(default_factory=list)
    connections: int = 0
    seq: int | None = None
    closed_with: int | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _socket: ClientConnection | None = None
    _thread: threading.Thread | None = None

    def start(self) -> LivePage:
        self._thread = threading.Thread(target=self._run, name=f"live-page-{self.query}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        socket = self._socket
        if socket is not None:
            socket.close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def frames(self, connection: int | None = None) -> list[dict[str, Any]]:
        return [r.frame for r in list(self.received) if connection is None or r.connection == connection]

    def shows(self, text: str, connection: int | None = None) -> bool:
        """A fragment with ``text`` arrived (on that socket, when given)."""
        return any(f["type"] == "fragments" and text in f["html"] for f in self.frames(connection))

    def _address(self) -> str:
        parts = urlsplit(self.page_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        since = f"&since={self.seq}" if self.seq is not None else ""
        return f"{scheme}://{parts.netloc}/ws/live/{self.slug}/?{self.query}{since}"

    def _run(self) -> None:
        delay = FIRST_DELAY
        while not self._stop.is_set():
            try:
                with connect(
                    self._address(),
                    additional_headers={"Cookie": f"sessionid={self.session}"},
                    origin=Origin(self.page_url),
                    open_timeout=5,
                ) as socket:
                    delay = FIRST_DELAY
                    self._socket = socket
                    self.connections += 1
                    self._read(socket, self.connections)
            except (OSError, TimeoutError, InvalidHandshake):
                pass
            self._socket = None
            if self.closed_with in REFUSED:
                return
            wait = delay + random.random() * delay * 0.3
            delay = min(delay * 2, MAX_DELAY)
            self._stop.wait(wait)

    def _read(self, socket: ClientConnection, number: int) -> None:
        try:
            for raw in socket:
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "ping":
                    socket.send('{"type":"pong"}')
                    continue
                if kind in ("hello", "resync", "fragments") or (
                    isinstance(frame.get("seq"), int) and (self.seq is None or frame["seq"] > self.seq)
                ):
                    self.seq = frame["seq"]
                self.received.append(Received(number, frame))
        except (ConnectionClosed, OSError):
            pass
        self.closed_with = socket.close_code


def wait_until_open(page: LivePage, connection: int, timeout: float = 10.0) -> dict[str, Any]:
    """The first frame of the page's ``connection``-th socket: hello, or resync."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frames = page.frames(connection)
        if frames:
            assert frames[0]["type"] in ("hello", "resync"), frames[0]
            return frames[0]
        time.sleep(0.02)
    raise AssertionError(f"the page's socket {connection} did not open within {timeout} s")
