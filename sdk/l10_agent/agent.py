"""``Agent``: registers with the console, heartbeats, holds the control socket open,
buffers what the agent reports, and makes ``agent.task()`` obey the console.

All network work of every ``Agent`` in a process runs on one background thread with an
asyncio loop, so a process can run hundreds of agents (the fleet simulator does). The
caller's side (``task``, ``record_*``) never does I/O: it appends to a bounded buffer.

Buffers: usage, events and metric samples each hold at most ``buffer_limit`` records
while the console is unreachable. Past that the oldest record is dropped and counted in
``agent.dropped``. Every record carries an id, so a batch sent again (its answer was lost)
is stored once. A heartbeat's metrics carry none: a heartbeat sent without an answer is
not sent again as a metrics batch (it may have been stored), and counts in
``agent.dropped["metrics"]``. Records the console refuses as invalid (a 4xx other than 401, 403,
404 and 429) are dropped too and counted in ``agent.rejected``: retrying cannot help.

Approvals: ``request_approval`` (and its async twin) asks the console on the background
loop and the caller waits on a future, nothing else. The request is sent again with
back-off until the console answers, under one key, so it is stored once. Its decision
arrives over the socket, or in a heartbeat's answer (every heartbeat names the requests
waited on); a stop or ``close()`` ends the wait with ``AgentStopped``. Past its timeout
and a grace, the request is read once; when the console cannot say, its ``on_timeout``
decides on the agent's side.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import math
import os
import random
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import websockets
from websockets.asyncio.client import connect as ws_connect

from l10_agent.decisions import UNKNOWN, UNREACHABLE, Decision, by_timeout, said
from l10_agent.errors import AgentPaused, AgentStopped, ApprovalRefused, Change, QuotaExceeded
from l10_agent.runtime import _Backoff, _Buffer, _Gauges, _iso, _shared_background

log = logging.getLogger("l10_agent")

DEFAULT_HEARTBEAT_INTERVAL = 10.0
DEFAULT_BUFFER_LIMIT = 10_000
RUNNING, PAUSED, STOPPED = "running", "paused", "stopped"
CLOSE_UNAUTHORIZED, CLOSE_UNKNOWN_AGENT = 4401, 4404
RETRYABLE_STATUS = {401, 403, 404, 408, 425, 429}
NO_SUCH_ROUTE = "E10903"
DEFAULT_APPROVAL_TIMEOUT = timedelta(minutes=30)
# The console reads at most 100 waited-on requests from one heartbeat; more take turns.
MAX_WAITING_PER_BEAT = 100
# Decisions heard over the socket before their request's answer was read (the two race).
MAX_HEARD = 256


@dataclass(frozen=True)
class _Ask:
    body: dict[str, Any]
    timeout_s: float
    on_timeout: str
    key: str


# --- the agent ----------------------------------------------------------------------------


class Agent:
    """An agent of the fleet, as the console sees it.

    ``Agent(url, token, external_id, labels=...)`` starts working at once in the
    background: it registers (retrying while the console is unreachable), heartbeats
    every ``L10_AGENT_HEARTBEAT_INTERVAL`` seconds (or what the console says), keeps the
    control socket open with back-off, and sends buffered records in batches.
    ``close()`` (or leaving a ``with`` block) flushes what is buffered and says goodbye.
    ``approval_grace``: how long past an approval request's timeout to wait for its
    decision before reading it (``request_approval``).
    """

    def __init__(
        self,
        url: str,
        token: str,
        external_id: str,
        *,
        name: str | None = None,
        labels: dict[str, str] | None = None,
        heartbeat_interval: float | None = None,
        buffer_limit: int = DEFAULT_BUFFER_LIMIT,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        socket: bool = True,
        on_change: Callable[[Change], None] | None = None,
        approval_grace: float | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"url must be http(s)://host[:port], got {url!r}")
        if not external_id:
            raise ValueError("external_id is required")
        self.url = url.rstrip("/")
        self.external_id = external_id
        self.name = name
        self.labels = dict(labels or {})
        self._token = token
        self._ws_url = urlunsplit(
            (
                "wss" if parts.scheme == "https" else "ws",
                parts.netloc,
                "/ws/agent",
                f"external_id={quote(external_id)}",
                "",
            )
        )
        env_interval = os.environ.get("L10_AGENT_HEARTBEAT_INTERVAL")
        self._interval = float(heartbeat_interval or env_interval or DEFAULT_HEARTBEAT_INTERVAL)
        self._fixed_interval = heartbeat_interval is not None
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._use_socket = socket
        self._approval_grace = approval_grace

        self._cond = threading.Condition()
        self._desired = RUNNING
        self._pause_mode: str | None = None
        self._version = 0
        self._quotas: dict[str, dict[str, int]] = {}
        self._server_usage: dict[str, dict[str, int]] = {}
        self._usage_total = {"tokens": 0, "api_calls": 0}
        self._usage_acked = {"tokens": 0, "api_calls": 0}
        self._acked_at_sync = {"tokens": 0, "api_calls": 0}
        self._in_flight = 0
        self._observed = "starting"
        self._reported: str | None = None
        self._closed = False
        self._callbacks: list[Callable[[Change], None]] = [on_change] if on_change else []
        self._gauges = _Gauges()
        self._gauge_lock = threading.Lock()

        self.agent_id: str | None = None
        self.registered = threading.Event()
        self.connected = False
        self._usage = _Buffer(buffer_limit)
        self._events = _Buffer(buffer_limit)
        self._metrics = _Buffer(buffer_limit)

        # Approval calls in hand and the requests they wait on, by id: touched on the
        # background loop only.
        self._calls: set[asyncio.Future[Decision]] = set()
        self._waiting: dict[str, set[asyncio.Future[Decision]]] = {}
        self._heard: OrderedDict[str, Decision] = OrderedDict()
        self._waiting_turn = 0

        self._bg = _shared_background()
        self._ws: Any = None
        self._main = self._bg.submit(self._run())

    # --- what the caller reads ---------------------------------------------------------

    @property
    def state(self) -> str:
        """The desired state the console last sent: running, paused or stopped."""
        return self._desired

    @property
    def observed_state(self) -> str:
        return self._observed

    @property
    def version(self) -> int:
        return self._version

    @property
    def quotas(self) -> dict[str, dict[str, int]]:
        return {kind: dict(periods) for kind, periods in self._quotas.items()}

    @property
    def dropped(self) -> dict[str, int]:
        """Records dropped because a buffer was full, by kind."""
        return {"usage": self._usage.dropped, "events": self._events.dropped, "metrics": self._metrics.dropped}

    @property
    def rejected(self) -> dict[str, int]:
        """Records the console refused as invalid, by kind."""
        return {"usage": self._usage.rejected, "events": self._events.rejected, "metrics": self._metrics.rejected}

    @property
    def buffered(self) -> dict[str, int]:
        return {"usage": len(self._usage), "events": len(self._events), "metrics": len(self._metrics)}

    def used(self, kind: str, period: str) -> int:
        """How much of a quota is used: the console's count plus what it has not yet counted."""
        with self._cond:
            return self._used(kind, period)

    def on_change(self, callback: Callable[[Change], None]) -> None:
        """Call ``callback(change)`` when the desired state or quotas change. It runs on the
        SDK's background thread: keep it short and do not block."""
        self._callbacks.append(callback)

    # --- what the caller reports (no I/O: a buffer append) ------------------------------

    def record_usage(
        self, model: str, input_tokens: int = 0, output_tokens: int = 0, api_calls: int = 1, *, at: float | None = None
    ) -> None:
        if input_tokens < 0 or output_tokens < 0 or api_calls < 0:
            raise ValueError("usage counts cannot be negative")
        tokens = input_tokens + output_tokens
        record = (uuid.uuid4(), model, input_tokens, output_tokens, api_calls, at or time.time(), tokens)
        with self._cond:
            self._usage_total["tokens"] += tokens
            self._usage_total["api_calls"] += api_calls
        if self._usage.add(record) == self._batch_size:  # crossing it, not on every call past it
            self._wake()

    def record_event(
        self,
        type: str,
        *,
        message: str = "",
        data: dict[str, Any] | None = None,
        severity: str = "info",
        at: float | None = None,
    ) -> None:
        record = (uuid.uuid4(), type, message, data or {}, severity, at or time.time())
        if self._events.add(record) == self._batch_size:
            self._wake()

    def record_metrics(
        self,
        *,
        cpu_percent: float | None = None,
        memory_mb: float | None = None,
        latency_p95_ms: float | None = None,
        tokens: int = 0,
        requests: int = 0,
        errors: int = 0,
    ) -> None:
        """Gauges keep their latest value, counters add up; both go out with the next heartbeat
        (or in a metrics batch, if that heartbeat cannot reach the console)."""
        with self._gauge_lock:
            g = self._gauges
            if cpu_percent is not None:
                g.cpu_percent = cpu_percent
            if memory_mb is not None:
                g.memory_mb = memory_mb
            if latency_p95_ms is not None:
                g.latency_p95_ms = latency_p95_ms
            g.tokens += tokens
            g.requests += requests
            g.errors += errors
            g.touched = True

    @contextlib.contextmanager
    def task(self, name: str = "task", *, timeout: float | None = None) -> Iterator[None]:
        """Run one unit of work the way the console allows.

        Waits while the agent is paused (``TimeoutError`` after ``timeout`` seconds),
        raises ``AgentStopped`` after an emergency stop and ``QuotaExceeded`` past a hard
        quota. Reports ``task.started`` and ``task.completed`` (with duration and outcome).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._closed:
                    raise AgentStopped("the agent is closed")
                if self._desired == STOPPED:
                    raise AgentStopped("the console stopped this agent; an admin must restart it")
                exceeded = self._quota_exceeded()
                if exceeded is not None:
                    raise exceeded
                if self._desired == RUNNING:
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"the agent is still {self._desired} after {timeout} s")
                self._cond.wait(remaining)
            self._in_flight += 1
        started = time.monotonic()
        self.record_event("task.started", data={"task": name})
        outcome, error = "succeeded", ""
        try:
            yield
        except BaseException as exc:
            outcome, error = "failed", f"{type(exc).__name__}: {exc}"[:500]
            raise
        finally:
            data: dict[str, Any] = {"task": name, "duration_ms": round((time.monotonic() - started) * 1000, 1)}
            data["outcome"] = outcome
            if error:
                data["error"] = error
            self.record_event("task.completed", data=data, severity="error" if error else "info")
            with self._cond:
                self._in_flight -= 1
                self._cond.notify_all()
            self._observe()

    def checkpoint(self) -> None:
        """Call between the steps of a long task. Raises ``AgentStopped`` after an
        emergency stop, and ``AgentPaused`` when the console paused the agent with mode
        "now"; a pause "after the current task" lets the task finish."""
        with self._cond:
            if self._desired == STOPPED:
                raise AgentStopped("the console stopped this agent; an admin must restart it")
            if self._desired == PAUSED and self._pause_mode == "now":
                raise AgentPaused("the console paused this agent now")

    def wait_for_state(self, state: str, timeout: float) -> bool:
        """Block until the desired state is ``state``; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._desired == state, timeout)

    def request_approval(
        self,
        action: str,
        summary: str,
        details: Any = None,
        *,
        timeout: timedelta | float = DEFAULT_APPROVAL_TIMEOUT,
        on_timeout: str = "reject",
        key: str | None = None,
    ) -> Decision:
        """Ask a person before a step, and wait for the answer.

        ``action`` names the step (``email.send``), ``summary`` says it in a line and
        ``details`` (JSON: text, an object, or ``{"before", "after"}``) shows what exactly.
        Nobody deciding within ``timeout`` (10 s to 7 days; a timedelta or seconds) decides
        it by ``on_timeout``: ``"reject"`` or ``"approve"``. ``key`` names the request:
        asking again with it (after a crash) gets the same request back, and its decision
        at once if there is one; without it the SDK makes one for this call.

        Returns a ``Decision``; go ahead only if ``decision.approved``. Raises
        ``ApprovalRefused`` when the console refuses the request as asked, and
        ``AgentStopped`` when the agent is stopped or closed before the answer comes. A
        paused agent keeps waiting. While the console is unreachable the request is sent
        again with back-off; when no decision reached the agent by ``timeout`` plus a
        grace (``approval_grace``, by default two heartbeat intervals and at least 30 s),
        the request is read once, and if the console cannot say, ``on_timeout`` decides
        (``decided_by`` "timeout (console unreachable)").
        """
        ask = self._approval_ask(action, summary, details, timeout, on_timeout, key)
        if threading.current_thread() is self._bg.thread:
            raise RuntimeError("request_approval would block the SDK's own thread; await arequest_approval there")
        future = self._bg.submit(self._approval(ask))
        try:
            return future.result()  # woken by the background loop: no polling
        except BaseException:
            future.cancel()  # an interrupted caller (Ctrl-C) ends the wait in the background too
            raise

    async def arequest_approval(
        self,
        action: str,
        summary: str,
        details: Any = None,
        *,
        timeout: timedelta | float = DEFAULT_APPROVAL_TIMEOUT,
        on_timeout: str = "reject",
        key: str | None = None,
    ) -> Decision:
        """``request_approval`` for asyncio callers: the same arguments, answers and
        exceptions; cancelling the awaiting task ends the wait."""
        ask = self._approval_ask(action, summary, details, timeout, on_timeout, key)
        return await asyncio.wrap_future(self._bg.submit(self._approval(ask)))

    def flush(self, timeout: float = 10.0) -> bool:
        """Send everything buffered now; True if the buffers are empty afterwards."""
        if self._closed:
            return not any(self.buffered.values())
        try:
            return bool(self._bg.submit(self._flush_all()).result(timeout))
        except (concurrent.futures.TimeoutError, TimeoutError):
            return False

    def close(self, timeout: float = 10.0, *, graceful: bool = True) -> None:
        """Flush what is buffered (for up to ``timeout`` seconds), report ``stopped``, stop.

        ``graceful=False`` stops at once, like a crash: nothing is flushed or reported, and
        the console marks the agent unresponsive once its heartbeats are missed.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        with contextlib.suppress(concurrent.futures.TimeoutError, TimeoutError):
            self._bg.submit(self._shutdown(timeout if graceful else 0.0, graceful=graceful)).result(timeout + 5)

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _approval_ask(
        self, action: str, summary: str, details: Any, timeout: timedelta | float, on_timeout: str, key: str | None
    ) -> _Ask:
        """The request as it is sent, checked only for what JSON cannot carry: its content
        is the console's to judge (``ApprovalRefused``)."""
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout)
        if not math.isfinite(seconds):
            raise ValueError(f"timeout must be a finite duration, got {timeout!r}")
        body: dict[str, Any] = {
            "action": action,
            "summary": summary,
            "details": details,
            "timeout_s": seconds,
            "on_timeout": on_timeout,
            "key": key or uuid.uuid4().hex,  # one key for every retry of this call: stored once
        }
        try:
            json.dumps(body, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"details must be JSON (no NaN or infinity): {exc}") from exc
        with self._cond:
            reason = self._stopped_reason()
        if reason is not None:
            raise AgentStopped(reason)
        return _Ask(body, seconds, on_timeout, body["key"])

    # --- state, under self._cond --------------------------------------------------------

    def _stopped_reason(self) -> str | None:
        if self._closed:
            return "the agent is closed"
        if self._desired == STOPPED:
            return "the console stopped this agent; an admin must restart it"
        return None

    def _used(self, kind: str, period: str) -> int:
        server = self._server_usage.get(kind, {}).get(period, 0)
        return server + self._usage_total.get(kind, 0) - self._acked_at_sync.get(kind, 0)

    def _quota_exceeded(self) -> QuotaExceeded | None:
        for kind, periods in self._quotas.items():
            for period, limit in periods.items():
                used = self._used(kind, period)
                if used >= limit:
                    return QuotaExceeded(kind, period, used, limit)
        return None

    def _compute_observed(self) -> str:
        if self._desired == RUNNING:
            return RUNNING if self.registered.is_set() or self._version else self._observed
        # Paused or stopped takes effect once the work in hand is done.
        return self._desired if self._in_flight == 0 else RUNNING

    def _observe(self) -> None:
        with self._cond:
            observed = self._compute_observed()
            changed = observed != self._observed
            self._observed = observed
        if changed and not self._closed:
            self._bg.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._send_state()))

    def _apply_control(self, msg: dict[str, Any]) -> None:
        """Take a control message from a heartbeat answer or the socket (older versions are ignored)."""
        with self._cond:
            version = int(msg.get("version", 0))
            if version < self._version:
                return
            previous, old_quotas = self._desired, self._quotas
            self._desired = msg.get("desired_state", self._desired)
            self._pause_mode = msg.get("pause_mode")
            self._version = version
            self._quotas = msg.get("quotas") or {}
            self._server_usage = msg.get("usage") or {}
            self._acked_at_sync = dict(self._usage_acked)
            if msg.get("agent_id"):
                self.agent_id = msg["agent_id"]
            if msg.get("heartbeat_interval") and not self._fixed_interval:
                self._interval = float(msg["heartbeat_interval"])
            self._cond.notify_all()
            changed = previous != self._desired or old_quotas != self._quotas
            change = Change(self._desired, previous, version, self.quotas)
            stopped = self._stopped_reason()
        if stopped is not None:
            self._bg.loop.call_soon_threadsafe(self._halt_approvals, stopped)
        self._observe()
        if changed:
            for callback in list(self._callbacks):
                try:
                    callback(change)
                except Exception:
                    log.exception("on_change callback failed")

    def _wake(self) -> None:
        wake = getattr(self, "_wake_event", None)
        if wake is not None:
            self._bg.loop.call_soon_threadsafe(wake.set)

    # --- the background loop --------------------------------------------------------------

    @property
    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    async def _post(self, path: str, body: dict[str, Any]) -> httpx.Response | None:
        return (await self._send(path, body))[0]

    async def _send(self, path: str, body: dict[str, Any]) -> tuple[httpx.Response | None, bool]:
        """The console's answer (None when none came), and whether the request may have
        reached it (False only when no connection was made: nothing was sent)."""
        try:
            async with self._bg.slots:
                response = await self._bg.http.post(f"{self.url}/api/v1/ingest{path}", json=body, headers=self._headers)
                return response, True
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            log.debug("%s: POST %s not sent: %s", self.external_id, path, exc)
            return None, False
        except httpx.HTTPError as exc:
            log.debug("%s: POST %s failed: %s", self.external_id, path, exc)
            return None, True

    async def _get(self, path: str) -> httpx.Response | None:
        try:
            async with self._bg.slots:
                return await self._bg.http.get(f"{self.url}/api/v1/ingest{path}", headers=self._headers)
        except httpx.HTTPError as exc:
            log.debug("%s: GET %s failed: %s", self.external_id, path, exc)
            return None

    async def _run(self) -> None:
        self._stop_event = asyncio.Event()
        self._wake_event = asyncio.Event()
        self._registered_event = asyncio.Event()
        jobs = [asyncio.ensure_future(self._heartbeat_loop()), asyncio.ensure_future(self._flush_loop())]
        if self._use_socket:
            jobs.append(asyncio.ensure_future(self._socket_loop()))
        await self._stop_event.wait()
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), seconds)

    async def _register(self) -> bool:
        body: dict[str, Any] = {"external_id": self.external_id, "labels": self.labels}
        if self.name:
            body["name"] = self.name
        response = await self._post("/register", body)
        if response is None or response.status_code not in (200, 201):
            if response is not None:
                log.warning("%s: register answered %s: %s", self.external_id, response.status_code, response.text[:300])
            return False
        # The registration answer is authoritative: after a console's database was reset
        # its versions start again from 1, and older-looking versions must not be ignored.
        with self._cond:
            self._version = 0
        self._apply_control(response.json())
        self.registered.set()
        self._registered_event.set()
        self._observe()
        return True

    def _unregistered(self) -> None:
        """The console no longer knows this agent (its database was reset): register again."""
        self.registered.clear()
        self._registered_event.clear()

    async def _heartbeat_loop(self) -> None:
        backoff = _Backoff(cap=max(1.0, self._interval))
        while not self._stop_event.is_set():
            ok = await self._heartbeat()
            if ok:
                backoff.reset()
            # ±10 % jitter keeps a fleet started together from heartbeating in lockstep.
            await self._sleep(self._interval * random.uniform(0.9, 1.1) if ok else backoff.next())  # noqa: S311

    def _take_sample(self) -> dict[str, Any] | None:
        with self._gauge_lock:
            g = self._gauges
            if not g.touched:
                return None
            sample: dict[str, Any] = {"tokens": g.tokens, "requests": g.requests, "errors": g.errors}
            for name in ("cpu_percent", "memory_mb", "latency_p95_ms"):
                value = getattr(g, name)
                if value is not None:
                    sample[name] = float(value)
            g.tokens = g.requests = g.errors = 0
            g.touched = False
        return sample

    async def _heartbeat(self, state: str | None = None) -> bool:
        if not self.registered.is_set() and not await self._register():
            return False
        sample = self._take_sample()
        now = time.time()
        body: dict[str, Any] = {"state": state or self._observed, "at": _iso(now)}
        if sample is not None:
            body["metrics"] = sample
        waiting = self._waiting_ids()
        if waiting:  # only then: a console without approvals refuses the field
            body["approvals"] = waiting
        response, reached = await self._send(f"/agents/{quote(self.external_id, safe='')}/heartbeat", body)
        if response is not None and response.status_code == 200:
            answer = response.json()
            for message in answer.get("decisions") or ():
                self._decided(message)
            self._apply_control(answer)
            return True
        if sample is not None:
            # A heartbeat carries no sample id, so its counters are sent at most once: kept
            # for a metrics batch (with an id of its own from here on) when the heartbeat
            # surely stored nothing (refused, or never sent); dropped and counted when it was
            # sent and no answer came, since the console may have stored it already.
            if response is not None or not reached:
                self._metrics.add((uuid.uuid4(), now, sample))
            else:
                self._metrics.count_dropped()
        if response is not None and response.status_code == 404:
            self._unregistered()
        return False

    async def _flush_loop(self) -> None:
        backoff = _Backoff(first=self._flush_interval, cap=30.0)
        while not self._stop_event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_event.wait(), self._flush_interval)
            self._wake_event.clear()
            if not self.registered.is_set():
                continue
            if await self._flush_all():
                backoff.reset()
            else:
                await self._sleep(backoff.next())

    async def _flush_all(self) -> bool:
        if not self.registered.is_set() and not await self._register():
            return False
        ok = True
        for buffer, path, key, encode in (
            (self._usage, "/usage", "records", self._encode_usage),
            (self._events, "/events", "events", self._encode_event),
            (self._metrics, "/metrics", "samples", self._encode_sample),
        ):
            ok = await self._flush(buffer, path, key, encode) and ok
        return ok

    async def _flush(self, buffer: _Buffer, path: str, key: str, encode: Callable[[Any], dict[str, Any]]) -> bool:
        while True:
            last_seq, items = buffer.peek(self._batch_size)
            if not items:
                return True
            response = await self._post(path, {key: [encode(item) for item in items]})
            if response is None or response.status_code >= 500 or response.status_code in RETRYABLE_STATUS:
                if response is not None and response.status_code == 404:
                    self._unregistered()
                return False
            if response.status_code >= 400:
                log.error("%s: the console refused %d %s: %s", self.external_id, len(items), key, response.text[:300])
                buffer.reject(last_seq)
                continue
            gone = buffer.ack(last_seq)
            if buffer is self._usage:
                with self._cond:
                    for record in gone:
                        self._usage_acked["tokens"] += record[6]
                        self._usage_acked["api_calls"] += record[4]

    def _encode_usage(self, record: Any) -> dict[str, Any]:
        uid, model, input_tokens, output_tokens, api_calls, at, _ = record
        return {
            "id": str(uid),
            "external_id": self.external_id,
            "model": model,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "api_calls": api_calls,
            "at": _iso(at),
        }

    def _encode_event(self, record: Any) -> dict[str, Any]:
        uid, kind, message, data, severity, at = record
        return {
            "id": str(uid),
            "external_id": self.external_id,
            "type": kind,
            "message": message,
            "data": data,
            "severity": severity,
            "at": _iso(at),
        }

    def _encode_sample(self, record: Any) -> dict[str, Any]:
        uid, at, sample = record
        # The id makes a retried batch safe: the console stores each sample once.
        return {"id": str(uid), "external_id": self.external_id, "at": _iso(at), **sample}

    # --- approvals, on the background loop -------------------------------------------------

    def _approval_path(self, approval_id: str = "") -> str:
        path = f"/agents/{quote(self.external_id, safe='')}/approvals"
        return f"{path}/{quote(approval_id, safe='')}" if approval_id else path

    def _grace(self) -> float:
        if self._approval_grace is not None:
            return self._approval_grace
        return max(30.0, 2 * self._interval)

    async def _approval(self, ask: _Ask) -> Decision:
        """1. Ask until the console answers (``_approval_post``); a decided request (asked
        before with this key) is its answer. 2. Wait for the decision, from the socket or a
        heartbeat (``_decided``), or a stop (``_halt_approvals``). 3. Past the timeout and
        the grace, read the request once (``_approval_wait``)."""
        call: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        reason = self._stopped_reason()
        if reason is not None:
            raise AgentStopped(reason)
        self._calls.add(call)
        try:
            answer = await self._approval_post(ask, call)
            decision = said(answer)
            if decision is not None:
                return decision
            approval_id = str(answer["approval_id"])
            heard = self._heard.pop(approval_id, None)
            if heard is not None:
                return heard
            self._waiting.setdefault(approval_id, set()).add(call)
            try:
                return await self._approval_wait(ask, approval_id, call)
            finally:
                waiters = self._waiting.get(approval_id, set())
                waiters.discard(call)
                if not waiters:
                    self._waiting.pop(approval_id, None)
        finally:
            self._calls.discard(call)
            if call.done() and not call.cancelled():
                call.exception()  # retrieved: a stop that came as this call ended is not "never retrieved"
            else:
                call.cancel()

    @staticmethod
    def _halted(call: asyncio.Future[Decision]) -> None:
        """Raise the stop that ended this call, if one did."""
        if call.done():
            raise call.exception() or AgentStopped("the approval call was ended")

    async def _approval_post(self, ask: _Ask, call: asyncio.Future[Decision]) -> dict[str, Any]:
        backoff = _Backoff(cap=max(1.0, self._interval))
        while True:
            if self.registered.is_set():
                response, _ = await self._send(self._approval_path(), ask.body)
                self._halted(call)
                if response is not None and response.status_code in (200, 201):
                    answer = _json(response)
                    if answer.get("approval_id"):
                        return answer
                elif response is not None and response.status_code < 500:
                    refusal = _refusal(response)
                    # A 404 naming no agent is a console that forgot it (register again);
                    # one naming no route is a console without approvals.
                    if response.status_code not in RETRYABLE_STATUS or refusal.code == NO_SUCH_ROUTE:
                        raise refusal
                    if response.status_code == 404:
                        self._unregistered()
                if response is not None:
                    log.warning(
                        "%s: asking for approval answered %s; asking again",
                        self.external_id, response.status_code,
                    )  # fmt: skip
            await self._rest(call, backoff.next())

    async def _rest(self, call: asyncio.Future[Decision], seconds: float) -> None:
        """Wait ``seconds`` before asking again, less if the agent registers meanwhile;
        raise at once if the agent is stopped meanwhile."""
        waits: set[asyncio.Future[Any]] = {call}
        registering = None
        if not self.registered.is_set():
            registering = asyncio.ensure_future(self._registered_event.wait())
            waits.add(registering)
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if registering is not None:
                registering.cancel()
        self._halted(call)

    async def _approval_wait(self, ask: _Ask, approval_id: str, call: asyncio.Future[Decision]) -> Decision:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ask.timeout_s + self._grace()
        while True:
            await asyncio.wait({call}, timeout=max(0.0, deadline - loop.time()))
            if call.done():
                return call.result()
            # No decision reached the agent by its time: the console has one by now (its
            # expiry decides by on_timeout) unless it was unreachable meanwhile.
            response = await self._get(self._approval_path(approval_id))
            if call.done():
                return call.result()
            if response is None or response.status_code != 200:
                why = UNKNOWN if response is not None and response.status_code == 404 else UNREACHABLE
                log.warning("%s: no decision for approval %s by its time: %s", self.external_id, approval_id, why)
                return by_timeout(approval_id, ask.key, ask.on_timeout, why)
            decision = said(_json(response))
            if decision is not None:
                return decision
            # Still pending on a console that answers: its expiry is due; it decides.
            deadline = loop.time() + self._grace()

    def _decided(self, message: Any) -> None:
        """A decision from the socket or a heartbeat: wake the calls waiting on it."""
        if not isinstance(message, dict):
            return
        decision = said(message)
        if decision is None:
            return
        calls = self._waiting.get(decision.approval_id)
        if not calls:  # its request's answer is still on its way (or no call waits on it)
            self._heard[decision.approval_id] = decision
            while len(self._heard) > MAX_HEARD:
                self._heard.popitem(last=False)
            return
        for call in calls:
            if not call.done():
                call.set_result(decision)

    def _halt_approvals(self, reason: str) -> None:
        for call in list(self._calls):
            if not call.done():
                call.set_exception(AgentStopped(reason))

    def _waiting_ids(self) -> list[str]:
        ids = list(self._waiting)
        if len(ids) <= MAX_WAITING_PER_BEAT:
            return ids
        start = self._waiting_turn % len(ids)
        self._waiting_turn += MAX_WAITING_PER_BEAT
        return (ids[start:] + ids[:start])[:MAX_WAITING_PER_BEAT]

    async def _socket_loop(self) -> None:
        backoff = _Backoff()
        while not self._stop_event.is_set():
            await self._registered_event.wait()
            code = None
            try:
                async with ws_connect(
                    self._ws_url,
                    additional_headers=self._headers,
                    open_timeout=5,
                    ping_interval=20,
                    ping_timeout=20,
                    close_timeout=2,
                ) as ws:
                    self._ws, self.connected = ws, True
                    backoff.reset()
                    await self._send_state()
                    async for raw in ws:
                        self._on_frame(raw)
                    code = ws.close_code
            except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                log.debug("%s: socket: %s", self.external_id, exc)
                code = getattr(getattr(exc, "rcvd", None), "code", None)
            finally:
                self._ws, self.connected = None, False
            if code == CLOSE_UNKNOWN_AGENT:
                self._unregistered()
            await self._sleep(backoff.next())

    def _on_frame(self, raw: str | bytes) -> None:
        try:
            msg = json.loads(raw)
        except ValueError:
            return
        if msg.get("type") == "control":
            self._apply_control(msg)
        elif msg.get("type") == "approval":
            self._decided(msg)
        elif msg.get("type") == "error":
            log.warning("%s: console says %s: %s", self.external_id, msg.get("code"), msg.get("message"))

    async def _send_state(self) -> None:
        ws, state = self._ws, self._observed
        if ws is None or state == "starting":
            return
        with contextlib.suppress(websockets.WebSocketException, OSError):
            await ws.send(json.dumps({"type": "state", "state": state}))

    async def _shutdown(self, timeout: float, *, graceful: bool = True) -> None:
        deadline = time.monotonic() + timeout
        self._halt_approvals("the agent is closed")
        if graceful:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_all(), max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._heartbeat(state=STOPPED), max(0.1, deadline - time.monotonic()))
        self._stop_event.set()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        with contextlib.suppress(Exception):
            await asyncio.wrap_future(self._main)


def _json(response: httpx.Response) -> dict[str, Any]:
    """The answer's JSON object; empty when it has none (a proxy's page, say)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _refusal(response: httpx.Response) -> ApprovalRefused:
    error = _json(response).get("error")
    if not isinstance(error, dict):
        error = {}
    message = str(error.get("message") or response.text[:300] or response.reason_phrase)
    return ApprovalRefused(str(error.get("code") or f"HTTP {response.status_code}"), message, response.status_code)
