"""The SDK's machinery under ``Agent``: one background loop per process, bounded buffers
of records waiting for the console, back-off, and the gauges between two reports."""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any

import httpx

# --- the shared background loop -------------------------------------------------------


class _Background:
    """One daemon thread running an asyncio loop for every Agent in the process."""

    # Requests in flight at once for the whole process: httpcore scans every queued request
    # against every connection, so hundreds of agents queueing at once starve the loop.
    MAX_IN_FLIGHT = 16

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._http: httpx.AsyncClient | None = None
        self._slots: asyncio.Semaphore | None = None
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), name="l10-agent", daemon=True)
        self.thread.start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        self.loop.run_forever()

    def submit(self, coro: Any) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(10.0, connect=3.0),
                # Expire idle connections before a server's usual 5 s keep-alive does, so a
                # request never races the server closing its connection.
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=10, keepalive_expiry=2.0),
            )
        return self._http

    @property
    def slots(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.MAX_IN_FLIGHT)
        return self._slots


_background: _Background | None = None
_background_lock = threading.Lock()


def _shared_background() -> _Background:
    global _background
    with _background_lock:
        if _background is None:
            _background = _Background()
        return _background


# --- buffers ----------------------------------------------------------------------------


class _Buffer:
    """A bounded FIFO of records; a record leaves only when the console acknowledged it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.items: deque[tuple[int, Any]] = deque()
        self.lock = threading.Lock()
        self.seq = 0
        self.dropped = 0
        self.rejected = 0

    def add(self, item: Any) -> int:
        with self.lock:
            if len(self.items) >= self.limit:
                self.items.popleft()
                self.dropped += 1
            self.seq += 1
            self.items.append((self.seq, item))
            return len(self.items)

    def peek(self, count: int) -> tuple[int, list[Any]]:
        with self.lock:
            batch = list(islice(self.items, count))
        return (batch[-1][0] if batch else 0), [item for _, item in batch]

    def ack(self, last_seq: int) -> list[Any]:
        """Remove the records up to ``last_seq``; returns them."""
        gone = []
        with self.lock:
            while self.items and self.items[0][0] <= last_seq:
                gone.append(self.items.popleft()[1])
        return gone

    def count_dropped(self, count: int = 1) -> None:
        """Records given up before they entered the buffer."""
        with self.lock:
            self.dropped += count

    def reject(self, last_seq: int) -> None:
        count = len(self.ack(last_seq))
        with self.lock:
            self.rejected += count

    def __len__(self) -> int:
        return len(self.items)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


class _Backoff:
    def __init__(self, first: float = 0.5, cap: float = 30.0) -> None:
        self.first, self.cap, self.current = first, cap, first

    def next(self) -> float:
        delay = self.current
        self.current = min(self.cap, self.current * 2)
        return delay * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not security

    def reset(self) -> None:
        self.current = self.first


@dataclass
class _Gauges:
    cpu_percent: float | None = None
    memory_mb: float | None = None
    latency_p95_ms: float | None = None
    tokens: int = 0
    requests: int = 0
    errors: int = 0
    touched: bool = False
    counters: dict[str, int] = field(default_factory=dict)
