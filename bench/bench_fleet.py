"""A console with 1,000 SDK agents connected: heartbeat latency beside the same probe with no fleet.

The target: with 1,000 simulated agents connected (control sockets open and
heartbeating) on this machine, heartbeat p99 stays under 50 ms.

- The console: uvicorn on core 1 with PostgreSQL and Redis (the agents' sockets are fed
  by the process's hub, one Redis subscription per tenant), as ``bench/common.py`` starts it.
- The fleet: ``PROCESSES`` load-generator processes (this module with ``--fleet``), all
  pinned to core 0, together running 1,000 ``l10_agent.Agent`` (``socket=True``, the
  default 10 s heartbeat interval, so about 100 heartbeats/s), spread over ``TENANTS``
  tenants' tokens. Agents start one after another over one heartbeat
  interval; each registers itself through the API and opens its control socket. Every 2 s
  each process records metrics on each of its agents, so every heartbeat carries a metrics
  sample as a real agent's does. Each process reports when its agents were registered and
  connected, the lag of the SDK's asyncio loop (the one thread that does the network work of
  all agents of a process), that thread's CPU, and each heartbeat's round trip as the SDK
  sees it.
- The probe: a thread of this process (core 0, beside the fleet; it sleeps between
  requests, so the scheduler runs it promptly when it wakes) sends heartbeats with metrics
  for ``PROBE_AGENTS`` extra agents over one keep-alive ``httpx`` connection at a steady
  ``PROBE_RATE`` per second and times each request (and, as an open-loop view, the time
  from when each was due, since a slow answer delays the next send).
- Floor: the same probe against the same console before the fleet starts.

While the fleet is connected the database is checked (the load was real): every fleet
agent's ``last_heartbeat_at`` must be younger than two intervals (the app calls three
"unresponsive"), at least 99 % of the sockets must stay open throughout, and the
metric-minute samples stored during the window give the heartbeat rate the server took in
(at least 80 % of 100/s). Failed fleet heartbeats are counted and reported, not fatal. The
server's RSS (``VmRSS``) and its established TCP connections are read from ``/proc``.

Why several processes: one process cannot hold 1,000 agents with this SDK (its one asyncio
thread saturates). Two trials show it, each 1,000 agents in ONE process for at most
``TRIAL_SECONDS``: started over ``START_SPREAD_SECONDS`` like the fleet, and all at once
(as ``fleet.simulator`` starts its agents). They report how many agents got registered and
connected, the SDK thread's CPU and loop lag, and the size of its httpx connection pool.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import queue
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import httpx
import redis

from bench import common
from bench.common import Row

# Its own database (the Redis database is the benches' shared one, flushed each run).
DB_NAME = common.db_name("l10bench_fleet")
REDIS_DB = common.redis_db(14)

# A small run: 40 agents in 2 processes heartbeating every 2 s (the console tells the SDK its
# interval), so the same phases and checks take seconds.
AGENTS = common.sized(1000, 40)
PROCESSES = common.sized(4, 2)  # load-generator processes for the measured fleet, AGENTS / PROCESSES agents each
TENANTS = common.sized(4, 2)
PROBE_AGENTS = common.sized(5, 2)
PROBE_RATE = 10.0  # heartbeats per second: 10 % on top of the fleet's 100/s
FLOOR_SECONDS = common.sized(30.0, 2.0)
LOAD_SECONDS = common.sized(60.0, 6.0)
WARMUP = common.sized(50, 5)
HEARTBEAT_INTERVAL_S = common.sized(10, 3)  # the server's and the SDK's default: 10 s
START_SPREAD_SECONDS = float(HEARTBEAT_INTERVAL_S)  # agents start one after another over one heartbeat interval
CONNECT_SECONDS = common.sized(120.0, 60.0)  # bound on registering and connecting the fleet
SETTLE_SECONDS = common.sized(12.0, 4.0)  # after every agent is connected, before the window: past one interval
TRIAL_SECONDS = common.sized(40.0, 20.0)  # bound on each one-process trial
TRIAL_PAUSE_SECONDS = common.sized(3.0, 0.5)  # between the fleet's end and a trial, and between the trials
FLEET_MAX_SECONDS = 900.0  # a fleet process exits by itself after this, whatever happens
METRICS_EVERY = common.sized(2.0, 0.5)  # seconds between two record_metrics on each agent: under one interval
FRESH_SECONDS = 2.0 * HEARTBEAT_INTERVAL_S  # every agent heartbeated within two intervals (the app: 3 = unresponsive)
PROMPT_SECONDS = HEARTBEAT_INTERVAL_S + 2.0  # ... and, counted, within one interval and a little
TARGET_P99_MS = 50.0
FLEET_PREFIX = "fleet-"


# --- a fleet process ------------------------------------------------------------------


def _emit(**message: Any) -> None:
    print(json.dumps(message), flush=True)


def _thread_cpu(tid: int | None) -> float:
    if tid is None:
        return 0.0
    fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(values: list[float], q: float) -> float:
    return common.percentile(values, q) if values else 0.0


def fleet_main() -> None:
    """A load generator: SDK agents; commands on stdin, JSON lines on stdout.

    The spec (``BENCH_FLEET``, JSON): ``url``, ``tokens``, ``first`` and ``agents`` (agent
    i is ``{prefix}{first + i:04d}`` under ``tokens[(first + i) % len(tokens)]``), ``spread``
    (agent i is created at i * spread / agents seconds; 0: all at once), ``limit`` (seconds
    to get every agent registered and connected) and ``trial`` (report and exit, without
    closing the agents, once connected or at the limit; otherwise hold them until ``stop``).
    Wall-clock times (``time.time()``) are reported so the parent can line processes up.
    """
    from l10_agent import Agent
    from l10_agent import runtime as sdk

    spec = json.loads(os.environ["BENCH_FLEET"])
    url, tokens, first, count = spec["url"], spec["tokens"], int(spec["first"]), int(spec["agents"])
    prefix, spread, limit, trial = spec["prefix"], float(spec["spread"]), float(spec["limit"]), bool(spec["trial"])
    deadman = threading.Timer(FLEET_MAX_SECONDS, lambda: os._exit(3))
    deadman.daemon = True
    deadman.start()

    heartbeats: list[tuple[float, float, bool]] = []  # (start, seconds, ok), appended on the SDK thread
    problems: collections.Counter[str] = collections.Counter()  # what went wrong, by kind

    class TimedAgent(Agent):
        """An ``Agent`` whose heartbeats are timed (on the SDK thread: includes its queueing)
        and whose refused requests are counted."""

        async def _heartbeat(self, state: str | None = None) -> bool:
            registered = self.registered.is_set()
            start = time.perf_counter()
            ok = await super()._heartbeat(state)
            if registered:
                heartbeats.append((start, time.perf_counter() - start, ok))
            return ok

        async def _post(self, path: str, body: dict[str, Any]) -> httpx.Response | None:
            response = await super()._post(path, body)
            if response is not None and response.status_code >= 300:
                problems[f"POST {path.rsplit('/', 1)[-1]}: {response.status_code}"] += 1
            return response

    class Problems(logging.Handler):
        """Counts what the SDK logs: failed requests (by exception), socket errors, warnings."""

        def emit(self, record: logging.LogRecord) -> None:
            args = record.args if isinstance(record.args, tuple) else ()
            if "failed" in record.msg and len(args) == 3:
                path = str(args[1]).rsplit("/", 1)[-1]
                problems[f"POST {path}: {type(args[2]).__name__}"] += 1
            elif "socket" in record.msg and len(args) == 2:
                problems[f"socket: {type(args[1]).__name__}"] += 1
            elif record.levelno >= logging.WARNING:
                problems[f"{record.levelname.lower()}: {record.msg[:40]}"] += 1

    sdk_log = logging.getLogger("l10_agent")
    sdk_log.setLevel(logging.DEBUG)
    sdk_log.propagate = False
    sdk_log.addHandler(Problems())

    commands: queue.Queue[str] = queue.Queue()

    def read_commands() -> None:
        for line in sys.stdin:
            commands.put(line.strip())
        commands.put("stop")  # the parent is gone

    threading.Thread(target=read_commands, daemon=True).start()

    bg = sdk._shared_background()
    sdk_tid = bg.thread.native_id
    lags: list[tuple[float, float]] = []  # (when, seconds late) of a 50 ms sleep on the SDK loop

    async def lag_monitor() -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.05)
            lags.append((start, time.perf_counter() - start - 0.05))

    monitor = bg.submit(lag_monitor())
    agents: list[Agent] = []

    def make(i: int) -> Agent:
        n = first + i
        labels = {"bench": prefix.rstrip("-"), "shard": str(n % 10)}
        return TimedAgent(url, tokens[n % len(tokens)], f"{prefix}{n:04d}", labels=labels)

    def pool_size() -> int:
        # httpx's private pool: context for the report only.
        transport: Any = bg.http._transport
        return len(transport._pool._connections)

    stop_metrics = threading.Event()

    def record_metrics() -> None:
        rng = random.Random(first)
        while not stop_metrics.wait(METRICS_EVERY):
            for agent in list(agents):
                agent.record_metrics(
                    cpu_percent=round(rng.uniform(5, 95), 1),
                    memory_mb=round(rng.uniform(200, 3000), 1),
                    latency_p95_ms=round(rng.uniform(20, 900), 1),
                    tokens=rng.randint(0, 4000),
                    requests=rng.randint(0, 20),
                    errors=int(rng.random() < 0.02),
                )

    threading.Thread(target=record_metrics, daemon=True).start()

    began_wall, began = time.time(), time.perf_counter()
    created = registered = connected = None
    last_check = last_progress = 0.0
    stopped = False
    while not stopped:
        now = time.perf_counter()
        due = count if spread <= 0 else min(count, int((now - began) / spread * count) + 1)
        while len(agents) < due:
            agents.append(make(len(agents)))
        if created is None and len(agents) == count:
            created = time.perf_counter() - began
        if now - last_check >= 0.1:
            last_check = now
            n_reg = sum(a.registered.is_set() for a in agents)
            n_con = sum(a.connected for a in agents)
            if registered is None and n_reg == count:
                registered = now - began
            if registered is not None and n_con == count:
                connected = now - began
                break
            if now - last_progress >= 5.0:
                _emit(event="progress", seconds=round(now - began, 1), registered=n_reg, connected=n_con)
                last_progress = now
            if now - began > limit:
                break
        with contextlib.suppress(queue.Empty):
            stopped = commands.get(timeout=0.002 if len(agents) < count else 0.05) == "stop"
    seconds = time.perf_counter() - began
    lag_ms = [lag * 1000 for _, lag in lags]
    _emit(
        event="trial" if trial else ("ready" if connected is not None else "not-ready"),
        seconds=seconds,
        began=began_wall,
        created_s=created,
        registered_s=registered,
        connected_s=connected,
        registered=sum(a.registered.is_set() for a in agents),
        connected=sum(a.connected for a in agents),
        sdk_cpu=_thread_cpu(sdk_tid),
        process_cpu=sum(os.times()[:2]),
        lag_p99=_pct(lag_ms, 99),
        lag_max=max(lag_ms, default=0.0),
        pool=pool_size(),
        problems=dict(problems),
    )
    problems.clear()
    if trial or stopped:
        sys.stdout.flush()
        os._exit(0)  # like a crash: the console sees the sockets drop

    window: dict[str, float] = {}
    window_problems: dict[str, int] = {}
    min_connected = count
    while True:
        try:
            command = commands.get(timeout=0.5)
        except queue.Empty:
            command = ""
        if command == "begin":
            window.update(begin=time.perf_counter(), sdk_cpu=_thread_cpu(sdk_tid), cpu=sum(os.times()[:2]))
            min_connected = count
            problems.clear()
        elif command == "end":
            window.update(end=time.perf_counter(), sdk_cpu_end=_thread_cpu(sdk_tid), cpu_end=sum(os.times()[:2]))
            window_problems = dict(problems)
        elif command == "stop":
            break
        if "begin" in window and "end" not in window:
            min_connected = min(min_connected, sum(a.connected for a in agents))

    stop_metrics.set()
    begin, end = window.get("begin", 0.0), window.get("end", time.perf_counter())
    seconds = max(end - begin, 1e-9)
    in_window = [h for h in heartbeats if begin <= h[0] < end]
    per_second = [0] * (int(seconds) + 1)
    for h in in_window:
        per_second[int(h[0] - begin)] += 1
    _emit(
        event="stats",
        seconds=seconds,
        heartbeats=len(in_window),
        failed=sum(not h[2] for h in in_window),
        hb_ms=[round(h[1] * 1000, 3) for h in in_window if h[2]],
        per_second=per_second[: int(seconds)],
        lag_ms=[round(lag * 1000, 3) for when, lag in lags if begin <= when < end],
        sdk_cpu_share=(window.get("sdk_cpu_end", 0.0) - window.get("sdk_cpu", 0.0)) / seconds,
        process_cpu_share=(window.get("cpu_end", 0.0) - window.get("cpu", 0.0)) / seconds,
        min_connected=min_connected,
        connected=sum(a.connected for a in agents),
        pool=pool_size(),
        problems=window_problems,
    )
    monitor.cancel()
    closing = time.perf_counter()
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda a: a.close(timeout=2.0, graceful=False), agents))
    _emit(event="closed", seconds=round(time.perf_counter() - closing, 1))
    sys.stdout.flush()
    os._exit(0)


# --- the parent: console, fleet processes, probe, checks ------------------------------


class Fleet(common.LineChild):
    """A fleet process: its JSON lines arrive on a queue; commands go to its stdin."""

    def __init__(self, name: str, spec: dict[str, Any], stderr: TextIO) -> None:
        self.name = name
        env = {**os.environ, "BENCH_FLEET": json.dumps(spec)}
        env.pop("L10_AGENT_HEARTBEAT_INTERVAL", None)  # the SDK's default, 10 s
        if common.SMALL:  # the console's shorter interval from the first heartbeat on
            env["L10_AGENT_HEARTBEAT_INTERVAL"] = str(HEARTBEAT_INTERVAL_S)
        super().__init__("bench.bench_fleet", ["--fleet"], env, stderr)

    def wait_for(self, *events: str, deadline: float) -> dict[str, Any]:
        """The next message of one of ``events`` (or ``exited``) before ``deadline`` (monotonic)."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.name} sent none of {events} in time")
            message = self.messages.get(timeout=remaining)
            if message.get("event") == "progress":
                common.progress(
                    f"{self.name}: {message['registered']} registered, {message['connected']} connected "
                    f"after {message['seconds']} s"
                )
                continue
            if message.get("event") in events or message.get("event") == "exited":
                return message

    def stop(self) -> None:
        if self.process.poll() is None:
            self.send("stop")
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@contextlib.contextmanager
def fleets(
    url: str, tokens: list[str], prefix: str, processes: int, *, spread: float, trial: bool
) -> Iterator[list[Fleet]]:
    """``processes`` fleet processes sharing ``AGENTS`` agents, each creating its agents over ``spread``
    seconds (0: at once); stopped (and their stderr shown) on exit."""
    per = AGENTS // processes
    limit = TRIAL_SECONDS if trial else CONNECT_SECONDS
    with contextlib.ExitStack() as stack:
        running = []
        for k in range(processes):
            log = stack.enter_context(tempfile.TemporaryFile(mode="w+", prefix="l10bench-fleet-"))
            spec = {
                "url": url,
                "tokens": tokens,
                "first": k * per,
                "agents": per if k < processes - 1 else AGENTS - k * per,
                "prefix": prefix,
                "spread": spread,
                "limit": limit,
                "trial": trial,
            }
            running.append(Fleet(f"{prefix}{k}", spec, log))
            stack.callback(_show_stderr, f"{prefix}{k}", log)
        try:
            yield running
        finally:
            for f in running:
                f.stop()


def _show_stderr(name: str, log: TextIO) -> None:
    log.seek(0)
    lines = log.read().strip().splitlines()
    if lines:
        print(f"--- {name} stderr ({len(lines)} lines, last 20) ---", file=sys.stderr)
        print("\n".join(lines[-20:]), file=sys.stderr)


def _expect(response: httpx.Response, status: int) -> None:
    if response.status_code != status:
        raise AssertionError(
            f"{response.request.method} {response.request.url.path}: {response.status_code}, "
            f"expected {status}: {response.text[:500]}"
        )


class Probe:
    """Heartbeats with metrics for a few agents, over one keep-alive connection, at a steady rate."""

    def __init__(self, base_url: str, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.client = httpx.Client(base_url=base_url, headers=headers, timeout=30.0)
        self.agents = [f"probe-{i}" for i in range(PROBE_AGENTS)]
        self.rng = random.Random(11)
        self.sent = 0

    def register(self) -> None:
        for external_id in self.agents:
            _expect(self.client.post("/api/v1/ingest/register", json={"external_id": external_id}), 201)

    def one(self) -> float:
        rng = self.rng
        body = json.dumps(
            {
                "state": "running",
                "at": datetime.now(UTC).isoformat(),
                "metrics": {
                    "cpu_percent": round(rng.uniform(5, 95), 1),
                    "memory_mb": round(rng.uniform(200, 3000), 1),
                    "latency_p95_ms": round(rng.uniform(20, 900), 1),
                    "tokens": rng.randint(0, 4000),
                    "requests": rng.randint(0, 20),
                    "errors": 0,
                },
            }
        ).encode()
        path = f"/api/v1/ingest/agents/{self.agents[self.sent % len(self.agents)]}/heartbeat"
        start = time.perf_counter()
        response = self.client.post(path, content=body)
        elapsed = time.perf_counter() - start
        _expect(response, 200)
        self.sent += 1
        return elapsed * 1000

    def steady(self, seconds: float) -> tuple[list[float], list[float], int]:
        """One heartbeat every 1/PROBE_RATE s for ``seconds``.

        Returns the latency of each (ms), the same measured from when it was due (ms: what
        an open-loop client would see, since a slow answer delays the next send), and how
        many sends started more than one period late.
        """
        period = 1 / PROBE_RATE
        out: list[float] = []
        from_due: list[float] = []
        late = 0
        start = time.perf_counter()
        for k in range(int(seconds * PROBE_RATE)):
            due = start + k * period
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            elif wait < -period:
                late += 1
            out.append(self.one())
            from_due.append((time.perf_counter() - due) * 1000)
        return out, from_due, late

    def close(self) -> None:
        self.client.close()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _established(port: int) -> int:
    """Established TCP connections whose local end is the server's port (IPv4)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
            count += 1
    return count


def _fleet_db() -> dict[str, float]:
    """What the database says of the fleet: agents, fresh heartbeats, oldest, stored samples."""
    with common.pg_connect(DB_NAME) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE last_heartbeat_at >= now() - make_interval(secs => %(f)s)), "
            "       count(*) FILTER (WHERE last_heartbeat_at >= now() - make_interval(secs => %(p2)s)), "
            "       coalesce(max(extract(epoch FROM now() - last_heartbeat_at)), -1), "
            "       count(*) FILTER (WHERE observed_state = 'running'), "
            "       (SELECT coalesce(sum(m.samples), 0) FROM fleet_metricminute m JOIN fleet_agent b "
            "          ON b.id = m.agent_id WHERE b.external_id LIKE %(p)s) "
            "FROM fleet_agent WHERE external_id LIKE %(p)s",
            {"f": FRESH_SECONDS, "p2": PROMPT_SECONDS, "p": FLEET_PREFIX + "%"},
        ).fetchone()
    assert row is not None
    return {
        "agents": int(row[0]),
        "fresh": int(row[1]),
        "prompt": int(row[2]),
        "oldest_s": float(row[3]),
        "running": int(row[4]),
        "samples": int(row[5]),
    }


def _redis_groups() -> int:
    """Hub channels subscribed in Redis: one per tenant with a socket, per server process."""
    client = redis.Redis(host=common.HOST, port=common.REDIS_PORT, db=common.REDIS_DB)
    try:
        return len(client.pubsub_channels(f"l10:hub:{common.REDIS_DB}:t:*"))
    finally:
        client.close()


def trial(url: str, tokens: list[str], prefix: str, spread: float) -> dict[str, Any]:
    """AGENTS agents in ONE process for at most TRIAL_SECONDS; what it reached."""
    with fleets(url, tokens, prefix, 1, spread=spread, trial=True) as (one,):
        result = one.wait_for("trial", deadline=time.monotonic() + TRIAL_SECONDS + 60)
    common.progress(f"{prefix}: {result.get('registered')} registered, {result.get('connected')} connected")
    return result


def _describe(counts: dict[str, int]) -> str:
    top = collections.Counter(counts).most_common(6)
    return ", ".join(f"{kind} x{n}" for kind, n in top) or "none"


def _trial_row(label: str, result: dict[str, Any]) -> Row:
    seconds = float(result.get("seconds", 0.0)) or 1.0
    connected_s = result.get("connected_s")
    reached = f"all connected after {connected_s:.1f} s" if connected_s else f"after {seconds:.0f} s"
    return Row(
        f"1 process, {AGENTS:,} agents {label}: connected",
        "agents",
        float(result.get("connected", 0)),
        better="higher",
        target=float(AGENTS),
        note=f"one fleet process, the SDK as shipped: {result.get('registered', 0)} registered and "
        f"{result.get('connected', 0)} sockets open, {reached}; its SDK thread used "
        f"{float(result.get('sdk_cpu', 0.0)) / seconds:.0%} of a core, loop lag p99 {result.get('lag_p99', 0):,.0f} ms, "
        f"max {result.get('lag_max', 0):,.0f} ms; the shared httpx pool held {result.get('pool', 0)} connections; "
        f"SDK problems: {_describe(result.get('problems', {}))}",
    )


def run() -> list[Row]:
    with common.own_stores(DB_NAME, REDIS_DB):
        return _run()


def _run() -> list[Row]:
    common.flush_redis()
    common.recreate_database()
    seeds = [common.seed_tenant(f"fleet-{k}") for k in range(TENANTS)]
    tokens = [s.token for s in seeds]
    interval = {"L10_AGENT_HEARTBEAT_INTERVAL": str(HEARTBEAT_INTERVAL_S)}
    with common.server(interval) as srv:
        url = srv.base_url
        port = int(url.rsplit(":", 1)[1])
        probe = Probe(url, tokens[0])
        try:
            probe.register()
            for _ in range(WARMUP):
                probe.one()
            rss_idle = _rss_mb(srv.pid)
            cpu = common.cpu_seconds(srv.pid)
            common.progress(f"floor: the probe alone for {FLOOR_SECONDS:.0f} s")
            floor_ms, floor_due, floor_late = probe.steady(FLOOR_SECONDS)
            floor_cpu = (common.cpu_seconds(srv.pid) - cpu) / FLOOR_SECONDS

            common.progress(
                f"fleet: {AGENTS} agents in {PROCESSES} processes on core {common.CLIENT_CORE}, "
                f"started over {START_SPREAD_SECONDS:.0f} s"
            )
            with fleets(url, tokens, FLEET_PREFIX, PROCESSES, spread=START_SPREAD_SECONDS, trial=False) as running:
                deadline = time.monotonic() + CONNECT_SECONDS + 30
                readies = [f.wait_for("ready", "not-ready", deadline=deadline) for f in running]
                if any(r.get("event") != "ready" for r in readies):
                    raise AssertionError(f"the fleet did not connect: {readies}")
                start = min(r["began"] for r in readies)
                registered_s = max(r["began"] + r["registered_s"] for r in readies) - start
                connected_s = max(r["began"] + r["connected_s"] for r in readies) - start
                common.progress(
                    f"fleet: all registered after {registered_s:.1f} s, all connected after {connected_s:.1f} s; "
                    f"settling {SETTLE_SECONDS:.0f} s"
                )
                time.sleep(SETTLE_SECONDS)
                before = _fleet_db()
                cpu = common.cpu_seconds(srv.pid)
                for f in running:
                    f.send("begin")
                began = time.monotonic()
                common.progress(f"load: the probe for {LOAD_SECONDS:.0f} s with {AGENTS} agents connected")
                load_ms, load_due, load_late = probe.steady(LOAD_SECONDS)
                window = time.monotonic() - began
                for f in running:
                    f.send("end")
                server_cpu = (common.cpu_seconds(srv.pid) - cpu) / window
                after = _fleet_db()
                rss_fleet = _rss_mb(srv.pid)
                sockets = _established(port)
                groups = _redis_groups()
                for f in running:
                    f.send("stop")
                deadline = time.monotonic() + 60
                stats = [f.wait_for("stats", deadline=deadline) for f in running]
                if any(s.get("event") != "stats" for s in stats):
                    raise AssertionError(f"a fleet process sent no stats: {stats}")
            # One process for all 1,000 agents, as the SDK's README and fleet.simulator suggest.
            time.sleep(TRIAL_PAUSE_SECONDS)
            spread_trial = trial(url, tokens, "one-spread-", START_SPREAD_SECONDS)
            time.sleep(TRIAL_PAUSE_SECONDS)
            burst_trial = trial(url, tokens, "one-burst-", 0.0)
        finally:
            probe.close()

    # The load was real: every fleet agent is known, connected throughout and heartbeating.
    heartbeats = sum(s["heartbeats"] for s in stats)
    failed = sum(s["failed"] for s in stats)
    min_connected = sum(s["min_connected"] for s in stats)
    common.progress(
        f"checks: database {after}; SDK: {heartbeats} heartbeats, {failed} failed, at least {min_connected} "
        f"connected; problems {[s['problems'] for s in stats]}"
    )
    assert after["agents"] == AGENTS, f"{after['agents']} fleet agents in the database"
    assert after["fresh"] == AGENTS, f"only {after['fresh']} of {AGENTS} fleet agents have a fresh heartbeat: {after}"
    assert min_connected >= 0.99 * AGENTS, f"sockets dropped during the window: at times {min_connected} connected"
    problems: collections.Counter[str] = collections.Counter()
    for s in stats:
        problems.update(s["problems"])
    connect_problems: collections.Counter[str] = collections.Counter()
    for r in readies:
        connect_problems.update(r["problems"])
    stored_rate = (after["samples"] - before["samples"]) / window
    assert stored_rate > 0.8 * AGENTS / HEARTBEAT_INTERVAL_S, f"only {stored_rate:.0f} heartbeats/s stored"

    sdk_ms = [ms for s in stats for ms in s["hb_ms"]]
    lag_ms = [ms for s in stats for ms in s["lag_ms"]]
    per_second = [sum(c) for c in zip(*(s["per_second"] for s in stats), strict=False)]
    threads = ", ".join(f"{s['sdk_cpu_share']:.0%}" for s in stats)
    pools = ", ".join(str(s["pool"]) for s in stats)
    fleet_cpu = sum(s["process_cpu_share"] for s in stats)

    p50, p99 = common.percentile(load_ms, 50), common.percentile(load_ms, 99)
    f50, f99 = common.percentile(floor_ms, 50), common.percentile(floor_ms, 99)
    probe_note = f"{PROBE_RATE:.0f}/s over one keep-alive connection, {PROBE_AGENTS} probe agents"
    return [
        Row(
            f"fleet connect ({AGENTS:,} agents, {PROCESSES} processes)",
            "s",
            connected_s,
            note=f"from the first Agent() to all {AGENTS} registered ({registered_s:.1f} s) and all sockets open "
            f"(agent.connected), agents started one after another over {START_SPREAD_SECONDS:.0f} s "
            f"({AGENTS // PROCESSES} per process), {TENANTS} tenants' tokens; SDK problems while connecting: "
            f"{_describe(connect_problems)}",
        ),
        Row(
            f"heartbeat p50, {AGENTS:,} agents connected",
            "ms",
            p50,
            floor=f50,
            note=f"probe: n={len(load_ms)} in {window:.0f} s, {probe_note} ({load_late} sent late); "
            f"floor: the same probe, no fleet, n={len(floor_ms)} in {FLOOR_SECONDS:.0f} s ({floor_late} late)",
        ),
        Row(
            f"heartbeat p99, {AGENTS:,} agents connected",
            "ms",
            p99,
            target=TARGET_P99_MS,
            floor=f99,
            note=f"p90 {common.percentile(load_ms, 90):.2f} ms, max {max(load_ms):.1f} ms; measured from when "
            f"each was due (open-loop view) p99 {common.percentile(load_due, 99):.1f} ms; floor p90 "
            f"{common.percentile(floor_ms, 90):.2f} ms, max {max(floor_ms):.1f} ms, from due p99 "
            f"{common.percentile(floor_due, 99):.1f} ms; server CPU {server_cpu:.0%} of its core with the fleet, "
            f"{floor_cpu:.0%} with the probe alone",
        ),
        Row(
            "fleet heartbeats stored (context)",
            "/s",
            stored_rate,
            better="higher",
            note=f"metric samples PostgreSQL stored for the fleet during the window; all {after['fresh']} fleet "
            f"agents had last_heartbeat_at within {FRESH_SECONDS:.0f} s, {after['prompt']} within "
            f"{PROMPT_SECONDS:.0f} s (oldest {after['oldest_s']:.1f} s), "
            f"{after['running']} observed running; the SDK counted {heartbeats} heartbeats "
            f"({heartbeats / window:.0f}/s; per second min {min(per_second, default=0)}, median "
            f"{_pct([float(c) for c in per_second], 50):.0f}, max {max(per_second, default=0)})",
        ),
        Row(
            "fleet heartbeats failed (context)",
            "%",
            100 * failed / max(heartbeats, 1),
            note=f"{failed} of {heartbeats} fleet heartbeats in the window got no answer or an error (the SDK "
            f"retries after a back-off); what the SDK logged in the window: {_describe(problems)}",
        ),
        Row(
            "fleet heartbeat p99 as the SDK sees it (context)",
            "ms",
            _pct(sdk_ms, 99),
            note=f"round trip timed on the SDK's asyncio threads (their queueing included): p50 "
            f"{_pct(sdk_ms, 50):.2f} ms, max {max(sdk_ms, default=0.0):.1f} ms",
        ),
        Row(
            f"SDK loop lag p99, {AGENTS // PROCESSES} agents per process (context)",
            "ms",
            _pct(lag_ms, 99),
            note=f"lateness of a 50 ms sleep on each process's one SDK thread: p50 {_pct(lag_ms, 50):.2f} ms, "
            f"max {max(lag_ms, default=0.0):.1f} ms; SDK threads used {threads} of a core, the {PROCESSES} "
            f"fleet processes {fleet_cpu:.0%} together; httpx pools held {pools} connections; sockets "
            f"connected throughout (at least {min_connected})",
        ),
        Row(
            f"server RSS, {AGENTS:,} sockets open (context)",
            "MB",
            rss_fleet,
            floor=rss_idle,
            note=f"VmRSS of the uvicorn process; floor: the same process before the fleet; "
            f"{sockets} established TCP connections on the server's port; "
            f"{groups} hub channels subscribed in Redis (one per tenant, not per socket)",
        ),
        _trial_row(f"started over {START_SPREAD_SECONDS:.0f} s", spread_trial),
        _trial_row("started at once", burst_trial),
    ]


if __name__ == "__main__":
    if sys.argv[1:] == ["--fleet"]:
        fleet_main()
    else:
        raise SystemExit("usage: python -m bench.bench_fleet --fleet (run by bench/run.py fleet)")
