"""Soak: the console under production's steady load for ten minutes; nothing may close,
fail, be lost or grow.

Usage: ``make soak``, or ``.venv/bin/python bench/soak.py [--small] [seconds]``; the
length is the argument, else ``SOAK_SECONDS``, else 600 (``--small``: 20). Not part of
``make bench``: it takes ten minutes and catches what only time shows (an idle
subscription that dies after the client library's socket timeout, memory or Redis keys
that grow: docs/performance.md, "Sockets" and "Soak"). ``--small`` (tests/test_soak.py)
runs the same processes, load and checks at a size that takes seconds.

- The console: one uvicorn process on core 1 with PostgreSQL and Redis (a database and a
  Redis database of the soak's own, so a soak never drops a benchmark's), with
  ``L10_WS_HEARTBEAT_INTERVAL`` at ``ws_ping`` seconds so pings flow,
  ``L10_WS_MAX_CONNECTIONS`` raised so the cap is not what is tested, and the ingest rate
  limit at its default (1,000 requests/s per token), not the benches' unlimited one. It
  serves ``bench.soak:application``, the console's application that also collects
  garbage fully when the soak asks (every ``collect_every`` s; ``GC_LOG_VARIABLE``).
- Background work: a Celery worker on both queues (``control,background``, prefork, two
  children) and ``celery beat`` with the console's schedule (``CELERY_BEAT_SCHEDULE``),
  both on core 1 beside the server: the deployment on one core, its clients on the other.
  So alert evaluation (every ``L10_ALERT_EVAL_INTERVAL`` s), the metric and cost rollups,
  the unresponsive sweep, the audit seal and the purges really run. The tenant has the
  default rules, two more that the agents running hot trip (a few agents run hot in
  turns, so alerts fire and resolve during the soak) and a monthly budget that the usage
  uses up by a half during the soak (its rules fire), with the genai-prices price list.
- The sockets: this process (core 0), the clients of ``bench_fanout``: ``sockets``
  sockets to ``/ws/events`` with the tenant's API token, subscribed to
  ``agent.state.changed``, answering every ping with a pong; ``PUBLISH_RATE`` events per
  second published from here with ``realtime.hub.send_payloads`` for the whole soak.
- The agents: a second process (this module with ``--ingest``, core 0) registers
  ``agents`` agents through the ingest API, then sends what they report, open-loop on a
  schedule, from ``CONNECTIONS`` threads with a keep-alive connection each (httpx) and
  the tenant's API token: a
  heartbeat with metrics from every agent every heartbeat interval (the console's answer:
  10 s, so 100 heartbeats/s for 1,000 agents), a usage batch (1 to 3 records) every
  ``usage_every`` s, an event batch every ``events_every`` s and a metric batch (a retried
  sample's kind, with ids) every ``metrics_every`` s per agent. The sockets open once every
  agent's first heartbeat is answered: that heartbeat changes each agent's state, a
  fleet's start (a thousand events to each socket at once), not the steady state.

Checks (the exit code is 1 when one fails): no socket closed; every socket received every
event published (none lost, none twice) and was pinged as often as the interval says;
no ingest request failed (a status other than 2xx, a connection error or timeout, or an
answer that did not accept everything) and the planned rate was sent; every record
accepted is in the database and every agent heartbeated within two intervals at the end;
beat's alert evaluations and cost rollups ran (counted in the worker's log, the rollup's
mark moved) and no task failed; the server's ``VmRSS`` at the end is within
``TARGET_DRIFT_PERCENT`` of its reading one minute in, and so are the objects it tracks
after a full collection and the Celery worker's ``VmRSS`` (its processes together); the Redis database's ``DBSIZE`` at the end is at most
``KEYS_TOLERANCE`` above its reading one minute in (cache, locks, rate limits, the hub
and the broker share that one database). At ``--small`` the RSS readings are reported,
not judged: twenty seconds show warm-up, not a leak.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import fcntl
import gc
import heapq
import json
import os
import platform
import queue
import random
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import redis  # noqa: E402

from bench import common  # noqa: E402
from bench.bench_fanout import (  # noqa: E402
    TOPIC,
    Client,
    Sockets,
    Tracker,
    describe_drops,
    django_setup,
    event_data,
    pct,
    rss_mb,
    run_loop,
    ws_url,
)
from bench.common import Row  # noqa: E402
from bench.run import print_rows  # noqa: E402


@dataclass(frozen=True)
class Size:
    """One size of the soak: its stores, its load and how often it looks."""

    name: str
    seconds: float  # the default length
    db: str
    redis_db: int  # no benchmark's (11 to 14, small 1 to 4) nor the test suite's default (15)
    sockets: int
    agents: int
    ws_ping: int  # L10_WS_HEARTBEAT_INTERVAL, seconds
    heartbeat: int | None  # L10_AGENT_HEARTBEAT_INTERVAL (None: the console's default, 10 s)
    usage_every: float  # seconds between two usage batches of one agent
    events_every: float
    metrics_every: float
    hot_every: int  # one agent in this many runs hot ...
    hot_turn: float  # ... for this many seconds, then the next ones do
    alert_eval: int | None  # L10_ALERT_EVAL_INTERVAL (None: the default, 15 s)
    beat_cap: float | None  # every beat entry at most this many seconds apart (None: the schedule as set)
    budget_usd: str  # the tenant's monthly budget
    baseline: float  # seconds into the soak of the warm-up readings (RSS, Redis keys)
    sample_every: float  # seconds between two RSS and DBSIZE readings
    progress_every: float
    collect_every: float  # seconds between two full collections the soak asks of the server
    judge_rss: bool


FULL = Size(
    name="full", seconds=600, db="l10soak", redis_db=6, sockets=1000, agents=1000, ws_ping=5, heartbeat=None,
    usage_every=15, events_every=60, metrics_every=300, hot_every=100, hot_turn=240, alert_eval=None, beat_cap=None,
    budget_usd="500.00", baseline=60, sample_every=5, progress_every=30, collect_every=30, judge_rss=True,
)  # fmt: skip
# Seconds, not minutes: the heartbeat, the evaluation and every beat entry shortened so
# that each runs several times in the window.
SMALL = Size(
    name="small", seconds=20, db="l10soak_small", redis_db=5, sockets=50, agents=50, ws_ping=2, heartbeat=2,
    usage_every=3, events_every=6, metrics_every=10, hot_every=10, hot_turn=8, alert_eval=2, beat_cap=4,
    budget_usd="5.00", baseline=8, sample_every=1, progress_every=5, collect_every=4, judge_rss=False,
)  # fmt: skip

TENANT_SLUG = "soak"
AGENT_PREFIX = "soak-"
PUBLISH_RATE = 2.0  # events per second to the sockets
CONNECTIONS = 16  # the agents' keep-alive connections to the console
IN_FLIGHT = 4 * CONNECTIONS  # the agents' requests sent and not yet answered, at most
REGISTER_CONCURRENCY = 8
REQUEST_TIMEOUT = 30.0
RSS_EVERY_NOTE = 60.0  # seconds between two readings shown in a note's series
DRAIN_SECONDS = 10.0  # after the last publish, for the last events to arrive
STOP_SECONDS = 60.0  # for the agents' last requests to finish once told to stop
TARGET_DRIFT_PERCENT = 10.0
TARGET_RATE_SHARE = 0.9  # of the planned ingest requests per second, at least
KEYS_TOLERANCE = 20  # keys the Redis database may hold at the end beyond its warm-up reading
SERVER_MAX_CONNECTIONS = 5000
WORKER_CONCURRENCY = 2
WORKER_READY_SECONDS = 60.0
DEFAULT_HEARTBEAT = 10  # the console's L10_AGENT_HEARTBEAT_INTERVAL default
DEFAULT_ALERT_EVAL = 15  # the console's L10_ALERT_EVAL_INTERVAL default
COSTS_ROLLUP_SECONDS = 300  # costs.tasks.rollup's entry in CELERY_BEAT_SCHEDULE
MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1-mini", "claude-sonnet-4-20250514", "gemini-2.5-flash")
EVENT_TYPES = ("task.completed", "task.failed")
# Rules the hot agents trip: (name, metric, aggregation, threshold, resolve below, window s).
RULES = (
    ("Soak: CPU above 90 %", "cpu_percent", "avg", 90.0, 80.0, 120),
    ("Soak: latency p95 above 1.5 s", "latency_p95_ms", "max", 1500.0, 1200.0, 120),
)

# The price list, the tenant (with its default rules), its token, the rules and the budget.
SEED_CODE = """
import json, os
from django.utils import timezone
from alerts.models import AlertRule
from audit.services import Actor
from costs import budgets
from costs.price_list import import_prices
from tenancy import services
from tenancy.models import Tenant
spec = json.loads(os.environ["SOAK_SEED"])
actor = Actor(user=None, name="soak")
imported = import_prices(actor=actor).lines()[0]
tenant = Tenant.objects.create(slug=spec["slug"], name=spec["slug"])
_, plain = services.token_create(tenant=tenant, name="soak", created_by=None)
now = timezone.now()
for name, metric, aggregation, threshold, resolve, window in spec["rules"]:
    AlertRule.objects.create(
        tenant=tenant, name=name, metric=metric, aggregation=aggregation, comparator="gt", threshold=threshold,
        resolve_threshold=resolve, window_seconds=window, created_at=now, updated_at=now,
    )
budgets.budget_set(tenant_id=tenant.pk, actor=actor, name="Soak month", monthly_usd=spec["budget"])
rules = AlertRule.objects.filter(tenant=tenant, enabled=True).count()
print("L10BENCH " + json.dumps({"tenant_id": tenant.pk, "token": plain, "rules": rules, "prices": imported}))
"""

# ``celery beat`` with the console's schedule; in a small soak each entry at most
# ``SOAK_BEAT_CAP`` seconds apart, so the five-minute and hourly ones run too.
BEAT_CODE = """
import os, sys
from datetime import timedelta
from l10console.celery import app
cap = os.environ.get("SOAK_BEAT_CAP", "")
if cap:
    most = timedelta(seconds=float(cap))
    app.conf.beat_schedule = {
        name: dict(entry, schedule=min(entry["schedule"], most)) for name, entry in app.conf.beat_schedule.items()
    }
app.start(sys.argv[1:])
"""


# The server the soak starts runs ``bench.soak:application``: the console's application
# (l10console/asgi.py) that also collects fully when sent SIGUSR1 and appends what it
# found to the file this variable names. The console freezes what it loaded at start and
# raises the collector's thresholds (docs/performance.md, "Sockets"), so under load the
# garbage in reference cycles (a Django request is one) that outlived two young
# collections waits minutes for a full one, and the RSS grows until it comes: measured,
# about 3 MB a minute for seven and a half minutes, then flat (docs/performance.md,
# "Soak"). Collected every ``collect_every`` s, the RSS one minute in is past that, so its
# drift is a leak's.
GC_LOG_VARIABLE = "SOAK_GC_LOG"
SERVER_APP = "bench.soak:application"


def __getattr__(name: str) -> Any:
    """``application``: the console's, collecting on SIGUSR1 (what uvicorn serves in a soak)."""
    if name != "application":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from l10console.asgi import application

    log = Path(os.environ[GC_LOG_VARIABLE])

    def collect(signum: int, frame: Any) -> None:
        started = time.perf_counter()
        found = gc.collect()
        took = time.perf_counter() - started
        line = {"at": time.time(), "collected": found, "ms": took * 1000, "objects": len(gc.get_objects()),
                "blocks": sys.getallocatedblocks()}  # fmt: skip
        with log.open("a") as out:
            out.write(json.dumps(line) + "\n")

    signal.signal(signal.SIGUSR1, collect)
    return application


def _emit(**message: Any) -> None:
    print(json.dumps(message), flush=True)


# --- the agents (a process of their own: --ingest) ------------------------------------------


KINDS = ("heartbeat", "usage", "events", "metrics")


@dataclass
class Kind:
    """What one kind of request met (in one thread; ``add`` sums the threads')."""

    sent: int = 0
    ok: int = 0
    accepted: int = 0  # records the answers accepted (batches)
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    examples: list[str] = field(default_factory=list)
    ms: list[float] = field(default_factory=list)

    def fail(self, reason: str, detail: str) -> None:
        self.failures[reason] += 1
        if len(self.examples) < 5:
            self.examples.append(f"{reason}: {detail[:200]}")

    def add(self, other: Kind) -> None:
        self.sent += other.sent
        self.ok += other.ok
        self.accepted += other.accepted
        self.failures.update(other.failures)
        self.examples += other.examples[: max(0, 5 - len(self.examples))]
        self.ms += other.ms

    def summary(self) -> dict[str, Any]:
        return {
            "sent": self.sent, "ok": self.ok, "failed": sum(self.failures.values()), "accepted": self.accepted,
            "failures": dict(self.failures), "examples": self.examples, "p50": pct(self.ms, 50),
            "p99": pct(self.ms, 99), "max": max(self.ms, default=0.0),
        }  # fmt: skip


class Agents:
    """``agents`` agents' requests, sent by ``CONNECTIONS`` threads, each with its own
    keep-alive connection (a synchronous httpx client: a quarter of the CPU per request of
    the asynchronous one, which matters on a load generator sharing its core)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.ids = [f"{AGENT_PREFIX}{i:05d}" for i in range(int(spec["agents"]))]
        self.headers = {"Authorization": f"Bearer {spec['token']}", "Content-Type": "application/json"}
        self.local = threading.local()
        self.threads: list[tuple[httpx.Client, dict[str, Kind]]] = []
        self.lock = threading.Lock()
        self.began = time.perf_counter()
        self.interval = float(DEFAULT_HEARTBEAT)  # the console's answer to registration, once there is one
        self.late: list[float] = []  # seconds each send started after it was due

    def mine(self) -> tuple[httpx.Client, dict[str, Kind], random.Random]:
        """This thread's client, counts and random numbers."""
        if not hasattr(self.local, "client"):
            self.local.client = httpx.Client(base_url=self.spec["url"], headers=self.headers, timeout=REQUEST_TIMEOUT)
            self.local.kinds = {k: Kind() for k in ("register", *KINDS)}
            self.local.rng = random.Random(threading.get_ident())
            with self.lock:
                self.threads.append((self.local.client, self.local.kinds))
        return self.local.client, self.local.kinds, self.local.rng

    def kinds(self) -> dict[str, Kind]:
        """Every thread's counts together."""
        out = {k: Kind() for k in ("register", *KINDS)}
        with self.lock:
            threads = list(self.threads)
        for _, kinds in threads:
            for name, kind in kinds.items():
                out[name].add(kind)
        return out

    def close(self) -> None:
        for client, _ in self.threads:
            client.close()

    def post(self, kind: str, path: str, body: dict[str, Any], *, status: int = 200, items: int = 0) -> Any:
        client, kinds, _ = self.mine()
        counted = kinds[kind]
        counted.sent += 1
        start = time.perf_counter()
        try:
            response = client.post(path, content=json.dumps(body).encode())
        except httpx.HTTPError as exc:
            counted.fail(type(exc).__name__, f"{path}: {exc!r}")
            return None
        counted.ms.append((time.perf_counter() - start) * 1000)
        if response.status_code != status:
            counted.fail(f"HTTP {response.status_code}", f"{path}: {response.text}")
            return None
        try:
            answer = response.json()
        except ValueError:
            counted.fail("answer", f"{path}: not JSON: {response.text}")
            return None
        if items and answer != {"accepted": items, "duplicates": 0}:
            counted.fail("answer", f"{path}: {items} sent, answered {answer}")
            return None
        if kind in ("register", "heartbeat") and "desired_state" not in answer:
            counted.fail("answer", f"{path}: {answer}")
            return None
        counted.ok += 1
        counted.accepted += items
        return answer

    def hot(self, i: int) -> bool:
        turn = int((time.perf_counter() - self.began) // float(self.spec["hot_turn"]))
        return (i + turn) % int(self.spec["hot_every"]) == 0

    def metrics(self, i: int, rng: random.Random) -> dict[str, Any]:
        hot = self.hot(i)
        requests = rng.randint(5, 50)
        return {
            "cpu_percent": round(rng.uniform(92, 99) if hot else rng.uniform(5, 70), 1),
            "memory_mb": round(rng.uniform(200, 3000), 1),
            "tokens": rng.randint(0, 4000),
            "requests": requests,
            "errors": requests // 5 if hot else int(rng.random() < 0.02),
            "latency_p95_ms": round(rng.uniform(1600, 2500) if hot else rng.uniform(20, 900), 1),
        }

    def register(self, i: int) -> None:
        body = {"external_id": self.ids[i], "name": f"Soak agent {i}", "labels": {"team": f"team-{i % 8}"}}
        answer = self.post("register", "/api/v1/ingest/register", body, status=201)
        if answer is not None:
            self.interval = float(answer["heartbeat_interval"])

    def send(self, kind: str, i: int) -> None:
        agent, (_, _, rng) = self.ids[i], self.mine()
        now = datetime.now(UTC)
        if kind == "heartbeat":
            body: dict[str, Any] = {"state": "running", "metrics": self.metrics(i, rng)}
            self.post(kind, f"/api/v1/ingest/agents/{agent}/heartbeat", body)
        elif kind == "usage":
            records = []
            for _ in range(rng.randint(1, 3)):
                tokens = rng.randint(200, 4000)
                records.append(
                    {
                        "external_id": agent, "id": str(uuid.uuid4()), "model": rng.choice(MODELS),
                        "input_tokens": tokens, "cached_input_tokens": rng.randint(0, tokens // 2),
                        "output_tokens": rng.randint(50, 800), "api_calls": 1, "at": now.isoformat(),
                    }
                )  # fmt: skip
            self.post(kind, "/api/v1/ingest/usage", {"records": records}, items=len(records))
        elif kind == "events":
            events = []
            for _ in range(rng.randint(1, 3)):
                failed = rng.random() < 0.05
                events.append(
                    {
                        "external_id": agent, "id": str(uuid.uuid4()), "type": EVENT_TYPES[failed],
                        "severity": "warning" if failed else "info", "message": f"task {rng.randint(1, 10**6)}",
                        "data": {"duration_ms": rng.randint(100, 90_000), "tool_calls": rng.randint(0, 12)},
                        "at": now.isoformat(),
                    }
                )  # fmt: skip
            self.post(kind, "/api/v1/ingest/events", {"events": events}, items=len(events))
        else:  # metric samples an agent sends again in a batch of their own, with ids
            samples = [
                {"external_id": agent, "id": str(uuid.uuid4()), "at": (now - timedelta(seconds=5 * k)).isoformat(),
                 **self.metrics(i, rng)}
                for k in range(3)
            ]  # fmt: skip
            self.post(kind, "/api/v1/ingest/metrics", {"samples": samples}, items=len(samples))


def ingest_main() -> None:
    """The agents: register each, then send on the schedule until told ``stop``."""
    spec = json.loads(os.environ["SOAK_INGEST"])
    stop = threading.Event()

    def read_commands() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stop.set()  # told to, or the parent is gone

    threading.Thread(target=read_commands, daemon=True).start()
    agents = Agents(spec)
    n = len(agents.ids)
    # Jobs (kind, agent, when due) for the threads; a full queue holds the schedule back, so
    # a console that answers slowly puts the sends behind their schedule (reported).
    jobs: queue.Queue[tuple[str, int, float] | None] = queue.Queue(maxsize=IN_FLIGHT)
    busy = [0]  # jobs queued or being sent

    def work() -> None:
        while (job := jobs.get()) is not None:
            kind, i, due = job
            if kind == "register":
                agents.register(i)
            else:
                agents.late.append(time.perf_counter() - due)
                agents.send(kind, i)
            with agents.lock:
                busy[0] -= 1
            jobs.task_done()

    def put(job: tuple[str, int, float]) -> None:
        with agents.lock:
            busy[0] += 1
        jobs.put(job)

    workers = [threading.Thread(target=work, name=f"agents-{k}", daemon=True) for k in range(CONNECTIONS)]
    for thread in workers:
        thread.start()
    started = time.perf_counter()
    for i in range(n):
        put(("register", i, started))
    jobs.join()
    registered = agents.kinds()["register"].ok
    _emit(event="registered", agents=registered, seconds=time.perf_counter() - started, interval=agents.interval)
    every = {"heartbeat": agents.interval, "usage": float(spec["usage_every"]),
             "events": float(spec["events_every"]), "metrics": float(spec["metrics_every"])}  # fmt: skip
    cpu, began = sum(os.times()[:2]), time.perf_counter()
    agents.began = began

    def report() -> None:
        """Progress now and then; ``steady`` once every agent's first heartbeat is answered."""
        told, every_s = False, float(spec["progress_every"])
        next_progress = every_s
        while not stop.wait(0.25):
            elapsed = time.perf_counter() - began
            kinds = agents.kinds()
            if not told and kinds["heartbeat"].ok + sum(kinds["heartbeat"].failures.values()) >= n:
                told = True
                _emit(event="steady", seconds=elapsed)
            if elapsed >= next_progress:
                next_progress += every_s
                _emit(
                    event="progress", seconds=elapsed, in_flight=busy[0],
                    sent=sum(k.sent for k in kinds.values()),
                    failed=sum(sum(k.failures.values()) for k in kinds.values()),
                )  # fmt: skip

    reporter = threading.Thread(target=report, daemon=True)
    reporter.start()
    # Each agent's first send of each kind at its own phase, spread over the period.
    due: list[tuple[float, int, int]] = []  # (when, kind, agent)
    for k, kind in enumerate(KINDS):
        for place, i in enumerate(random.Random(kind).sample(range(n), n)):
            due.append((began + every[kind] * place / n, k, i))
    heapq.heapify(due)
    while registered == n and not stop.is_set():
        when, k, i = due[0]
        wait = when - time.perf_counter()
        if wait > 0:
            stop.wait(min(wait, 0.25))
            continue
        kind = KINDS[k]
        heapq.heapreplace(due, (when + every[kind], k, i))
        put((kind, i, when))
    steady = time.perf_counter() - began
    stop.set()
    for _ in workers:
        jobs.put(None)
    deadline = time.monotonic() + STOP_SECONDS
    for thread in workers:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    late = list(agents.late)
    _emit(
        event="stats",
        seconds=steady,
        interval=agents.interval,
        registered=registered,
        kinds={name: k.summary() for name, k in agents.kinds().items()},
        unfinished=busy[0],
        late_p99=pct(late, 99),
        late_max=max(late, default=0.0),
        late_over_1s=sum(x > 1.0 for x in late),
        cpu=(sum(os.times()[:2]) - cpu) / max(steady, 1e-9),
    )
    agents.close()


class Ingest(common.LineChild):
    """The agents' process: its JSON lines arrive on a queue; ``stop`` goes to its stdin."""

    def __init__(self, spec: dict[str, Any], stderr: TextIO) -> None:
        super().__init__("bench.soak", ["--ingest"], {**os.environ, "SOAK_INGEST": json.dumps(spec)}, stderr)
        self.last_progress: dict[str, Any] = {}

    def poll(self) -> dict[str, Any] | None:
        """The next message other than progress (kept in ``last_progress``), if one came."""
        while True:
            try:
                message = self.messages.get_nowait()
            except queue.Empty:
                return None
            if message.get("event") == "progress":
                self.last_progress = message
                continue
            return message

    async def wait_for(self, event: str, seconds: float) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            message = self.poll()
            if message is not None and message.get("event") in (event, "exited"):
                return message
            await asyncio.sleep(0.05)
        raise TimeoutError(f"the agents' process sent no {event!r} within {seconds:.0f} s")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


# --- Celery ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Celery:
    worker: int  # pid
    beat: int
    worker_log: Path
    beat_log: Path


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def celery(size: Size, folder: Path, extra_env: dict[str, str]) -> Iterator[Celery]:
    """A worker on both queues and beat, pinned to the server's core, on the soak's stores;
    their logs in ``folder``. Stopped (SIGTERM, then SIGKILL) on exit."""
    env = {**common.server_env(), **extra_env}
    pin = ["taskset", "-c", str(common.SERVER_CORE), str(common.PYTHON)]
    worker_log, beat_log = folder / "worker.log", folder / "beat.log"
    name = f"soak-{os.getpid()}@%h"
    worker_command = [*pin, "-m", "celery", "-A", "l10console", "worker", "-Q", "control,background", "-l", "info",
                      "--concurrency", str(WORKER_CONCURRENCY), "-n", name]  # fmt: skip
    beat_command = [*pin, "-c", BEAT_CODE, "beat", "-l", "info", "--schedule", str(folder / "beat-schedule")]
    beat_env = {**env, "SOAK_BEAT_CAP": "" if size.beat_cap is None else str(size.beat_cap)}
    processes: list[subprocess.Popen[bytes]] = []
    with worker_log.open("w") as wlog, beat_log.open("w") as blog:
        try:
            worker = subprocess.Popen(worker_command, cwd=common.ROOT, env=env, stdout=wlog, stderr=subprocess.STDOUT)
            processes.append(worker)
            deadline = time.monotonic() + WORKER_READY_SECONDS
            while " ready." not in worker_log.read_text(errors="replace"):
                if worker.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the Celery worker did not start:\n{_tail(worker_log, 40)}")
                time.sleep(0.1)
            beat = subprocess.Popen(beat_command, cwd=common.ROOT, env=beat_env, stdout=blog, stderr=subprocess.STDOUT)
            processes.append(beat)
            common.progress(
                f"celery worker pid {worker.pid} and beat pid {beat.pid} on core(s) {common.describe_affinity(worker.pid)}"
            )
            yield Celery(worker=worker.pid, beat=beat.pid, worker_log=worker_log, beat_log=beat_log)
        finally:
            for process in reversed(processes):
                if process.poll() is None:
                    process.terminate()
            for process in reversed(processes):
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux ``/proc``)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo.extend(int(c) for c in task.read_text().split())
    return found


def tree_rss(pid: int) -> float:
    """``VmRSS`` of ``pid`` and its descendants together, MB."""
    total = 0.0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            total += rss_mb(p)
    return total


def tree_cpu(pid: int) -> float:
    total = 0.0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            total += common.cpu_seconds(p)
    return total


TASK_DONE = re.compile(r"Task ([\w.]+)\[[^\]]+\] succeeded in [\d.e-]+s: (.*)$")
TASK_FAILED = re.compile(r"Task ([\w.]+)\[[^\]]+\] (raised|retry|INTERNAL ERROR)")
BEAT_SENT = re.compile(r"Sending due task \S+ \(([\w.]+)\)")


@dataclass
class Tasks:
    """What the worker's and beat's logs say."""

    done: collections.Counter[str]
    failed: collections.Counter[str]
    sent: collections.Counter[str]
    transitions: int  # alert transitions the evaluations made
    errors: list[str]  # the worker's ERROR and CRITICAL lines, the first few


def read_logs(cel: Celery) -> Tasks:
    done: collections.Counter[str] = collections.Counter()
    failed: collections.Counter[str] = collections.Counter()
    sent: collections.Counter[str] = collections.Counter()
    transitions = 0
    errors: list[str] = []
    for line in cel.worker_log.read_text(errors="replace").splitlines():
        if found := TASK_DONE.search(line):
            done[found.group(1)] += 1
            if found.group(1) == "alerts.tasks.evaluate" and found.group(2).strip().isdigit():
                transitions += int(found.group(2))
        elif found := TASK_FAILED.search(line):
            failed[found.group(1)] += 1
        if (" ERROR/" in line or " CRITICAL/" in line) and len(errors) < 5:
            errors.append(line[:300])
    for line in cel.beat_log.read_text(errors="replace").splitlines():
        if found := BEAT_SENT.search(line):
            sent[found.group(1)] += 1
    return Tasks(done, failed, sent, transitions, errors)


# --- Redis and the machine --------------------------------------------------------------------


def family(key: bytes) -> str:
    """A key with its ids and numbers as ``#``: keys of one kind count together."""
    text = key.decode(errors="replace")
    return re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}|[0-9a-f]{16,}|\d+", "#", text)


def families(client: redis.Redis) -> collections.Counter[str]:
    return collections.Counter(family(k) for k in client.scan_iter(count=1000))


def core_times() -> dict[int, tuple[int, int]]:
    """Each core's (busy, total) jiffies so far (``/proc/stat``)."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            numbers = [int(v) for v in values[:8]]
            idle = numbers[3] + numbers[4]
            out[int(name[3:])] = (sum(numbers) - idle, sum(numbers))
    return out


def busy(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]) -> dict[int, float]:
    return {c: (after[c][0] - before[c][0]) / max(1, after[c][1] - before[c][1]) for c in after if c in before}


@contextlib.contextmanager
def own_redis_db(number: int) -> Iterator[None]:
    """One soak per Redis database at a time: a second waits (a test run beside a
    ``make soak`` of the same size, or two test runs) instead of flushing the first's keys."""
    path = Path(tempfile.gettempdir()) / f"l10-soak-redis-{number}.lock"
    with path.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            common.progress(f"another soak uses Redis database {number}; waiting for it to end")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# --- the soak ----------------------------------------------------------------------------------


@dataclass
class Reading:
    at: float  # seconds into the soak
    server: float  # MB
    worker: float
    beat: float
    keys: int


@dataclass
class Soaked:
    seconds: float
    connect_s: float
    registered: dict[str, Any]
    clients: list[Client]
    drops: list[Client]
    published: int
    publish_failed: int
    late_publishes: int
    delivery_ms: list[float]
    quiet_ms: list[float]  # the same, of the events no ping arrived during
    incomplete: int  # events that had not reached every socket after the drain
    rss_before: float  # the server's, before the first socket
    readings: list[Reading]
    baseline: Reading
    end: Reading
    keys_baseline: collections.Counter[str]
    keys_end: collections.Counter[str]
    cpu: dict[str, float]  # share of a core each of the soak's processes used
    cores: dict[int, float]  # each core's busy share, whoever used it
    loadavg: tuple[float, float, float]
    foreign: int
    ingest: dict[str, Any]
    ingest_exit: int | None
    collections: list[dict[str, float]]  # the server's full collections, "at" in seconds into the soak


async def soak(size: Size, seconds: float, url: str, seed: common.Seed, pid: int, cel: Celery, gc_log: Path) -> Soaked:
    from realtime import hub

    keys_client = redis.Redis(host=common.HOST, port=common.REDIS_PORT, db=common.REDIS_DB)
    with tempfile.TemporaryFile(mode="w+", prefix="l10soak-agents-") as agents_log:
        spec = {
            "url": url, "token": seed.token, "agents": size.agents, "usage_every": size.usage_every,
            "events_every": size.events_every, "metrics_every": size.metrics_every, "hot_every": size.hot_every,
            "hot_turn": size.hot_turn, "progress_every": size.progress_every, "seed": 42,
        }  # fmt: skip
        ingest = Ingest(spec, agents_log)
        try:
            common.progress(f"registering {size.agents} agents through the ingest API")
            registered = await ingest.wait_for("registered", 300)
            if registered.get("event") != "registered" or registered.get("agents") != size.agents:
                agents_log.seek(0)
                raise RuntimeError(f"the agents did not all register: {registered}\n{agents_log.read()[-3000:]}")
            common.progress(
                f"{registered['agents']} agents registered in {registered['seconds']:.1f} s; they report now, "
                f"heartbeats every {registered['interval']:g} s"
            )
            # Each agent's first heartbeat changes its state (a registered agent is not yet
            # running): a thousand agent.state.changed events, each to every socket, a
            # fleet's start and not the steady state soaked here. The sockets open after it.
            steady = await ingest.wait_for("steady", 3 * float(registered["interval"]) + 60)
            if steady.get("event") != "steady":
                raise RuntimeError(f"the agents' first heartbeats were not all answered: {steady}")
            common.progress(f"every agent's first heartbeat answered after {steady['seconds']:.1f} s")
            result = await _soak(size, seconds, url, seed, pid, cel, hub, keys_client, ingest, gc_log)
            result.registered = registered
            return result
        finally:
            ingest.kill()
            keys_client.close()
            agents_log.seek(0)
            lines = agents_log.read().strip().splitlines()
            if lines:
                print(f"--- agents' process stderr ({len(lines)} lines, last 20) ---", file=sys.stderr)
                print("\n".join(lines[-20:]), file=sys.stderr)


async def _soak(
    size: Size, seconds: float, url: str, seed: common.Seed, pid: int, cel: Celery, hub: Any,
    keys_client: redis.Redis, ingest: Ingest, gc_log: Path,
) -> Soaked:  # fmt: skip
    tracker = Tracker(nonce=secrets.token_hex(8), expected=size.sockets)
    sockets = Sockets(ws_url(url), TENANT_SLUG, seed.token, tracker)
    sockets.on_drop = lambda c: common.progress(f"DROPPED {c.describe()}")
    rss_before = rss_mb(pid)
    common.progress(f"opening {size.sockets} sockets")
    connect_s = await sockets.open(size.sockets)
    common.progress(
        f"{size.sockets} sockets open in {connect_s:.1f} s; soaking {seconds:.0f} s: pings every {size.ws_ping} s, "
        f"{PUBLISH_RATE:g} events/s"
    )
    # The warm-up readings one minute in; in a soak too short for that, at ``baseline``
    # or half way, whichever comes first.
    baseline_at = min(size.baseline, seconds / 2)
    # The server's full collections: every ``collect_every`` s, and just before the two
    # readings that are judged.
    collect_at = sorted(
        {*(size.collect_every * n for n in range(1, int(seconds // size.collect_every) + 1)),
         max(0.0, baseline_at - 1), max(0.0, seconds - 1)}
    )  # fmt: skip

    def read(at: float) -> Reading:
        return Reading(at, rss_mb(pid), tree_rss(cel.worker), tree_rss(cel.beat), int(keys_client.dbsize()))

    sent: dict[int, float] = {}  # seq → when it was published
    failed = late = 0
    readings = [read(0.0)]
    baseline: Reading | None = None
    keys_baseline: collections.Counter[str] = collections.Counter()
    ingest_exit: int | None = None
    own = {"server": pid, "worker": cel.worker, "beat": cel.beat, "agents": ingest.process.pid}
    try:
        cpu = {name: tree_cpu(p) for name, p in own.items()}
        mine, cores, began, began_wall = time.process_time(), core_times(), time.perf_counter(), time.time()
        period = 1 / PUBLISH_RATE
        next_reading = size.sample_every
        next_progress = size.progress_every
        k = 0
        while True:
            due = k * period
            now = time.perf_counter() - began
            if due >= seconds:
                break
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > period:
                late += 1
            payload = hub.encode(TOPIC, event_data(tracker.nonce, k))
            t0 = time.perf_counter()
            seqs = hub.send_payloads(seed.tenant_id, [payload])
            if seqs:
                sent[seqs[0]] = t0
            else:
                failed += 1
            k += 1
            now = time.perf_counter() - began
            while collect_at and now >= collect_at[0]:
                collect_at.pop(0)
                os.kill(pid, signal.SIGUSR1)
            if baseline is None and now >= baseline_at:
                baseline = read(now)
                readings.append(baseline)
                keys_baseline = families(keys_client)
            if now >= next_reading:
                readings.append(read(now))
                next_reading += size.sample_every
            message = ingest.poll()
            if message is not None and message.get("event") == "exited" and ingest_exit is None:
                ingest_exit = int(message.get("returncode", -1))
                common.progress(f"THE AGENTS' PROCESS EXITED with {ingest_exit}")
            if now >= next_progress:
                next_progress += size.progress_every
                last, p = readings[-1], ingest.last_progress
                common.progress(
                    f"{now:.0f} s: {size.sockets - len(sockets.drops)} sockets open, {len(sent)} events published; "
                    f"agents: {p.get('sent', 0)} requests, {p.get('failed', 0)} failed, {p.get('in_flight', 0)} in "
                    f"flight; RSS server {last.server:.1f} MB, worker {last.worker:.1f} MB; Redis keys {last.keys}"
                )
        end = read(time.perf_counter() - began)
        readings.append(end)
        keys_end = families(keys_client)
        elapsed = time.perf_counter() - began
        shares = {name: (tree_cpu(p) - cpu[name]) / elapsed for name, p in own.items()}
        shares["sockets"] = (time.process_time() - mine) / elapsed
        cores_busy = busy(cores, core_times())
        loadavg = os.getloadavg()
        # The last events: wait until every socket has them (or the drain's deadline).
        drain_until = time.perf_counter() + DRAIN_SECONDS
        while time.perf_counter() < drain_until and any(tracker.count.get(s, 0) < size.sockets for s in sent):
            await asyncio.sleep(0.05)
        drops = sockets.drops
        ingest.send("stop")
        stats = await ingest.wait_for("stats", STOP_SECONDS + 30)
        if stats.get("event") == "exited":
            ingest_exit = int(stats.get("returncode", -1))
            stats = {}
    finally:
        await sockets.close()
    assert baseline is not None
    complete = [s for s in sent if tracker.count.get(s, 0) >= size.sockets]
    pinged = sorted(sockets.ping_times)

    def quiet(seq: int) -> bool:
        """No ping arrived while this event was on its way."""
        n = bisect.bisect_left(pinged, sent[seq])
        return n == len(pinged) or pinged[n] > tracker.last[seq]

    return Soaked(
        seconds=elapsed,
        connect_s=connect_s,
        registered={},
        clients=sockets.clients,
        drops=drops,
        published=len(sent),
        publish_failed=failed,
        late_publishes=late,
        delivery_ms=[(tracker.last[s] - sent[s]) * 1000 for s in complete],
        quiet_ms=[(tracker.last[s] - sent[s]) * 1000 for s in complete if quiet(s)],
        incomplete=len(sent) - len(complete),
        rss_before=rss_before,
        readings=readings,
        baseline=baseline,
        end=end,
        keys_baseline=keys_baseline,
        keys_end=keys_end,
        cpu=shares,
        cores=cores_busy,
        loadavg=loadavg,
        foreign=tracker.foreign,
        ingest=stats,
        ingest_exit=ingest_exit,
        collections=[{**c, "at": c["at"] - began_wall} for c in read_collections(gc_log)],
    )


def read_collections(path: Path) -> list[dict[str, float]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- what the database says ---------------------------------------------------------------------


@dataclass
class Stored:
    agents: int
    fresh: int  # heartbeated within two intervals of the end
    samples: int  # metric samples in the minute rows
    usage: int
    events: int
    alerts: dict[str, int]  # by state
    transitions: int
    evaluated_at: float | None  # seconds before the end of the newest evaluation of an open alert
    marks: dict[str, tuple[datetime, datetime]]  # rollup marks: (done until, updated at)
    cost_hours: int
    budget_alerts: list[str]


def stored(tenant_id: int, interval: float) -> Stored:
    with common.pg_connect(common.DB_NAME) as conn:

        def one(statement: str, params: Any) -> Any:
            row = conn.execute(statement, params).fetchone()
            assert row is not None
            return row

        agents, fresh = one(
            "SELECT count(*), count(*) FILTER (WHERE last_heartbeat_at >= now() - make_interval(secs => %s)) "
            "FROM fleet_agent WHERE tenant_id = %s AND external_id LIKE %s",
            [2 * interval, tenant_id, AGENT_PREFIX + "%"],
        )
        (samples,) = one("SELECT coalesce(sum(samples), 0) FROM fleet_metricminute WHERE tenant_id = %s", [tenant_id])
        (usage,) = one("SELECT count(*) FROM costs_usagerecord WHERE tenant_id = %s", [tenant_id])
        (events,) = one(
            "SELECT count(*) FROM events_event WHERE tenant_id = %s AND type = ANY(%s)", [tenant_id, list(EVENT_TYPES)]
        )
        alerts = dict(
            conn.execute("SELECT state, count(*) FROM alerts_alert WHERE tenant_id = %s GROUP BY state", [tenant_id])
        )
        (transitions,) = one(
            "SELECT count(*) FROM alerts_alerttransition t JOIN alerts_alert a ON a.id = t.alert_id "
            "WHERE a.tenant_id = %s",
            [tenant_id],
        )
        (age,) = one(
            "SELECT extract(epoch FROM now() - max(evaluated_at)) FROM alerts_alert WHERE tenant_id = %s AND state IN "
            "('pending', 'firing')",
            [tenant_id],
        )
        marks = {name: (until, at) for name, until, at in conn.execute(
            "SELECT name, done_until, updated_at FROM fleet_rollupmark")}  # fmt: skip
        (cost_hours,) = one("SELECT count(*) FROM costs_costhour WHERE tenant_id = %s", [tenant_id])
        budget_alerts = [
            f"{r[0]} ({r[1]})"
            for r in conn.execute(
                "SELECT r.name, a.state FROM alerts_alert a JOIN alerts_alertrule r ON r.id = a.rule_id "
                "WHERE a.tenant_id = %s AND r.metric = 'budget_use_pct' ORDER BY r.threshold",
                [tenant_id],
            )
        ]
    return Stored(
        agents=int(agents), fresh=int(fresh), samples=int(samples), usage=int(usage), events=int(events),
        alerts={str(k): int(v) for k, v in alerts.items()}, transitions=int(transitions),
        evaluated_at=None if age is None else float(age), marks=marks, cost_hours=int(cost_hours),
        budget_alerts=budget_alerts,
    )  # fmt: skip


# --- the table -----------------------------------------------------------------------------------


def _series(readings: list[Reading], pick: str, unit: str) -> str:
    """Readings about a minute apart (every one in a short soak), the last included."""
    shown, next_at = [], 0.0
    span = readings[-1].at
    step = RSS_EVERY_NOTE if span > 4 * RSS_EVERY_NOTE else max(span / 10, 1e-9)
    for r in readings:
        if r.at >= next_at or r is readings[-1]:
            value = getattr(r, pick)
            shown.append(f"{r.at:.0f} s {value:.1f}" if unit == "MB" else f"{r.at:.0f} s {value}")
            next_at = r.at + step
    return ", ".join(shown) + (f" {unit}" if unit else "")


def _grown(before: collections.Counter[str], after: collections.Counter[str]) -> str:
    changed = sorted(
        ((name, before.get(name, 0), after.get(name, 0)) for name in set(before) | set(after)),
        key=lambda x: -abs(x[2] - x[1]),
    )
    moved = [f"{name} {a} → {b}" for name, a, b in changed if a != b][:8]
    return "; ".join(moved) or "no kind of key changed in number"


def _describe(kinds: dict[str, Any]) -> str:
    parts = []
    for name in ("register", *KINDS):
        k = kinds.get(name, {})
        parts.append(
            f"{name} {k.get('ok', 0):,}/{k.get('sent', 0):,} ok (p50 {k.get('p50', 0):.1f} ms, p99 "
            f"{k.get('p99', 0):.1f} ms, max {k.get('max', 0):.0f} ms)"
        )
    return "; ".join(parts)


def rows(size: Size, s: Soaked, st: Stored, tasks: Tasks, start_marks: dict[str, Any]) -> list[Row]:
    n = size.sockets
    received = [c.events for c in s.clients]
    fewest, most = min(received), max(received)
    pings = [c.pings for c in s.clients]
    expected_pings = max(1, int(s.seconds // size.ws_ping) - 2)
    base, end = s.baseline, s.end
    drift = 100 * (end.server - base.server) / base.server
    worker_drift = 100 * (end.worker - base.worker) / base.worker
    servers = [r.server for r in s.readings]
    workers = [r.worker for r in s.readings]
    keys = [r.keys for r in s.readings]

    ingest = s.ingest
    kinds: dict[str, Any] = ingest.get("kinds", {})
    steady = [kinds.get(k, {}) for k in KINDS]
    requests = sum(k.get("sent", 0) for k in steady)
    failed = sum(k.get("failed", 0) for k in (*steady, kinds.get("register", {})))
    failures: collections.Counter[str] = collections.Counter()
    examples: list[str] = []
    for k in kinds.values():
        failures.update(k.get("failures", {}))
        examples += k.get("examples", [])
    interval = float(ingest.get("interval", DEFAULT_HEARTBEAT))
    steady_s = float(ingest.get("seconds", 0.0)) or 1.0
    planned = size.agents * (1 / interval + 1 / size.usage_every + 1 / size.events_every + 1 / size.metrics_every)
    rate = requests / steady_s
    accepted = {k: kinds.get(k, {}).get("accepted", 0) for k in KINDS}
    heartbeats = kinds.get("heartbeat", {}).get("ok", 0)
    missing = (
        (accepted["usage"] - st.usage) + (accepted["events"] - st.events)
        + (heartbeats + accepted["metrics"] - st.samples)
    )  # fmt: skip

    evaluations = tasks.done["alerts.tasks.evaluate"]
    eval_every = size.alert_eval or DEFAULT_ALERT_EVAL
    if size.beat_cap is not None:
        eval_every = min(eval_every, int(size.beat_cap))
    expected_evaluations = int(s.seconds // eval_every)
    rollups = tasks.done["costs.tasks.rollup"]
    rollup_every = COSTS_ROLLUP_SECONDS if size.beat_cap is None else min(COSTS_ROLLUP_SECONDS, size.beat_cap)
    costs_mark = st.marks.get("costs")
    mark_note = (
        "no costs rollup mark"
        if costs_mark is None
        else f"the costs mark {'absent' if start_marks.get('costs') is None else 'present'} at the start, at the end done until "
        f"{costs_mark[0]:%H:%M:%S}, moved at {costs_mark[1]:%H:%M:%S}"
    )
    mark_moved = costs_mark is not None and start_marks.get("costs") != costs_mark[1]
    ran = ", ".join(
        f"{name.split('.', 1)[0]}.{name.rsplit('.', 1)[1]} {count}" for name, count in sorted(tasks.done.items())
    )
    judge = size.judge_rss
    # The collections just before the two judged readings: live objects then.
    done = s.collections
    first = next((c for c in reversed(done) if c["at"] <= base.at), done[0] if done else None)
    last = done[-1] if done else None
    objects_drift = 100 * (last["objects"] - first["objects"]) / first["objects"] if first and last else 0.0
    collected = [c["collected"] for c in done]
    pauses = [c["ms"] for c in done]
    collections_note = (
        f"the server collected fully {len(done)} times, every {size.collect_every:g} s (SIGUSR1, "
        f"bench.soak:application): each found {min(collected, default=0):,}–{max(collected, default=0):,} "
        f"unreachable objects and took p50 {pct(pauses, 50):.0f} ms, max {max(pauses, default=0.0):.0f} ms"
    )

    return [
        Row(
            f"soak: sockets open, {s.seconds:.0f} s",
            "sockets",
            float(len(s.clients) - len(s.drops)),
            better="higher",
            target=float(n),
            note=f"{len(s.clients)} opened in {s.connect_s:.1f} s; at the end {len(s.clients) - len(s.drops)} open",
        ),
        Row(
            "soak: disconnects",
            "sockets",
            float(len(s.drops)),
            target=0.0,
            note=f"sockets the server (or the network) closed during the soak: {describe_drops(s.drops)}",
        ),
        Row(
            "soak: events lost, worst socket",
            "events",
            float(s.published - fewest),
            target=0.0,
            note=f"{s.published} events published ({PUBLISH_RATE:g}/s, {s.publish_failed} publishes failed, "
            f"{s.late_publishes} sent more than a period late); each socket received between {fewest} and {most} "
            f"(more than published means duplicates); {s.incomplete} events short of all {n} sockets after "
            f"a {DRAIN_SECONDS:.0f} s drain; {sum(c.resyncs for c in s.clients)} resyncs; {s.foreign} events of "
            f"another publisher ignored (the agents' own state changes among them)",
        ),
        Row("soak: events duplicated, worst socket", "events", float(max(0, most - s.published)), target=0.0),
        Row(
            "soak: pings answered, fewest on a socket",
            "pings",
            float(min(pings)),
            better="higher",
            target=float(expected_pings),
            note=f"server pings every {size.ws_ping} s, each answered with a pong: per socket between "
            f"{min(pings)} and {max(pings)}; unexpected frames "
            f"{[e for c in s.clients for e in c.errors][:3] or 'none'}",
        ),
        Row(
            "soak: delivery p99, publish → last socket",
            "ms",
            pct(s.delivery_ms, 99),
            note=f"context: p50 {pct(s.delivery_ms, 50):.2f} ms, max {max(s.delivery_ms, default=0.0):.1f} ms over "
            f"{len(s.delivery_ms)} events; the {len(s.quiet_ms)} no ping arrived during: p50 "
            f"{pct(s.quiet_ms, 50):.2f} ms, p99 {pct(s.quiet_ms, 99):.2f} ms",
        ),
        Row(
            "soak: ingest requests failed",
            "requests",
            float(failed + (0 if s.ingest_exit is None else 1) + ingest.get("unfinished", 0) + (0 if ingest else 1)),
            target=0.0,
            note=f"non-2xx answers, connection errors and timeouts, answers that did not accept every record, "
            f"over {CONNECTIONS} keep-alive connections: {dict(failures) or 'none'}"
            f"{f' (e.g. {examples[:3]})' if examples else ''}; {ingest.get('unfinished', 0)} still unanswered "
            f"{STOP_SECONDS:.0f} s after the stop; the agents' process "
            f"{'ran to the end' if s.ingest_exit is None else f'exited with {s.ingest_exit}'}",
        ),
        Row(
            "soak: ingest requests per second",
            "requests/s",
            rate,
            better="higher",
            target=TARGET_RATE_SHARE * planned,
            note=f"{requests:,} requests in {steady_s:.0f} s of {size.agents} agents (planned {planned:.1f}/s: a "
            f"heartbeat every {interval:g} s, usage every {size.usage_every:g} s, events every "
            f"{size.events_every:g} s, metrics every {size.metrics_every:g} s, each agent); "
            f"{_describe(kinds)}; sends more than 1 s behind their schedule {ingest.get('late_over_1s', 0)}, "
            f"p99 {ingest.get('late_p99', 0) * 1000:.1f} ms behind; the agents' process used "
            f"{ingest.get('cpu', 0):.0%} of core {common.CLIENT_CORE}",
        ),
        Row(
            "soak: accepted records not stored",
            "records",
            float(abs(missing)),
            target=0.0,
            note=f"accepted → in the database: usage {accepted['usage']:,} → {st.usage:,}, events "
            f"{accepted['events']:,} → {st.events:,}, metric samples (heartbeats {heartbeats:,} + batches "
            f"{accepted['metrics']:,}) → {st.samples:,} in the minute rows",
        ),
        Row(
            "soak: agents heartbeating at the end",
            "agents",
            float(st.fresh),
            better="higher",
            target=float(size.agents),
            note=f"of {st.agents} registered, those with a heartbeat in the last {2 * interval:g} s",
        ),
        Row(
            "soak: alert evaluations run",
            "runs",
            float(evaluations),
            better="higher",
            target=float(max(1, expected_evaluations // 2)),
            note=f"alerts.tasks.evaluate succeeded in the worker (every {eval_every} s: about "
            f"{expected_evaluations} expected; beat sent {tasks.sent['alerts.tasks.evaluate']}); they made "
            f"{tasks.transitions} transitions; the tenant's alerts by state {st.alerts or 'none'}, "
            f"{st.transitions} transitions stored; the newest evaluation of an open alert "
            f"{'-' if st.evaluated_at is None else f'{st.evaluated_at:.0f} s'} before the end; budget alerts: "
            f"{', '.join(st.budget_alerts) or 'none'}",
        ),
        Row(
            "soak: cost rollups run",
            "runs",
            float(rollups if mark_moved else 0),
            better="higher",
            target=1.0 if s.seconds >= rollup_every else None,  # judged when the soak spans its interval
            note=f"costs.tasks.rollup succeeded {rollups} time(s) (every {rollup_every:g} s; beat sent "
            f"{tasks.sent['costs.tasks.rollup']}), counted only if its mark moved: {mark_note}; "
            f"{st.cost_hours} cost-hour rows; every task that succeeded: {ran}",
        ),
        Row(
            "soak: Celery tasks failed",
            "tasks",
            float(sum(tasks.failed.values())),
            target=0.0,
            note=f"{dict(tasks.failed) or 'none'}; the worker's error lines: {tasks.errors or 'none'}",
        ),
        Row(
            f"soak: server RSS at {base.at:.0f} s",
            "MB",
            base.server,
            note=f"uvicorn VmRSS with {n} sockets and {size.agents} agents reporting; {s.rss_before:.1f} MB before "
            f"the first socket, {servers[0]:.1f} MB when all were open",
        ),
        Row(
            "soak: server RSS at the end",
            "MB",
            end.server,
            floor=base.server,
            note=f"floor: the reading at {base.at:.0f} s; every {size.sample_every:g} s it was between "
            f"{min(servers):.1f} and {max(servers):.1f} MB: {_series(s.readings, 'server', 'MB')}; "
            f"{collections_note}",
        ),
        Row(
            f"soak: server RSS drift, {base.at:.0f} s → end",
            "%",
            drift,
            target=TARGET_DRIFT_PERCENT if judge else None,
        ),
        Row(
            f"soak: server objects after a full collection, drift {base.at:.0f} s → end",
            "%",
            objects_drift,
            target=TARGET_DRIFT_PERCENT if judge and first and last else None,
            note="objects the collector tracks (not those frozen at start), after the collections just before "
            "the two readings: "
            + (
                f"{first['objects']:,} at {first['at']:.0f} s, {last['objects']:,} at {last['at']:.0f} s; "
                f"pymalloc blocks {first['blocks']:,} → {last['blocks']:,}"
                if first and last
                else "no collection was reported"
            ),
        ),
        Row(
            f"soak: Celery worker RSS drift, {base.at:.0f} s → end",
            "%",
            worker_drift,
            target=TARGET_DRIFT_PERCENT if judge else None,
            note=f"the worker and its {WORKER_CONCURRENCY} pool processes together: {base.worker:.1f} MB at "
            f"{base.at:.0f} s, {end.worker:.1f} MB at the end, between {min(workers):.1f} and {max(workers):.1f} MB: "
            f"{_series(s.readings, 'worker', 'MB')}; beat {base.beat:.1f} → {end.beat:.1f} MB",
        ),
        Row(f"soak: Redis keys at {base.at:.0f} s", "keys", float(base.keys)),
        Row(
            f"soak: Redis keys grown, {base.at:.0f} s → end",
            "keys",
            float(end.keys - base.keys),
            target=float(KEYS_TOLERANCE),
            note=f"DBSIZE of Redis database {size.redis_db} (the cache, locks, rate limits, the hub and the "
            f"broker all use it): {base.keys} at {base.at:.0f} s, {end.keys} at the end, between {min(keys)} and "
            f"{max(keys)}: {_series(s.readings, 'keys', '')}; kinds of key that changed in number: "
            f"{_grown(s.keys_baseline, s.keys_end)}",
        ),
    ]


def soak_seconds(argv: list[str], size: Size) -> float:
    raw = argv[0] if argv else os.environ.get("SOAK_SECONDS", str(size.seconds))
    try:
        seconds = float(raw)
    except ValueError:
        raise SystemExit(f"the soak's length must be a number of seconds, not {raw!r}") from None
    if seconds < 2 * size.ws_ping:
        raise SystemExit(f"a soak shorter than {2 * size.ws_ping} s tests nothing")
    return seconds


def server_extra(size: Size) -> dict[str, str]:
    """What the server, the worker and beat run with beyond ``common.server_env()``."""
    extra = {
        "L10_WS_HEARTBEAT_INTERVAL": str(size.ws_ping),
        "L10_WS_MAX_CONNECTIONS": str(SERVER_MAX_CONNECTIONS),
        "L10_INGEST_RATE_LIMIT": "1000",  # the default: the benches raise it
    }
    if size.heartbeat is not None:
        extra["L10_AGENT_HEARTBEAT_INTERVAL"] = str(size.heartbeat)
    if size.alert_eval is not None:
        extra["L10_ALERT_EVAL_INTERVAL"] = str(size.alert_eval)
    return extra


def seed_soak(size: Size) -> tuple[common.Seed, dict[str, Any]]:
    spec = json.dumps({"slug": TENANT_SLUG, "rules": RULES, "budget": size.budget_usd})
    out = common.manage("shell", "--no-imports", "-c", SEED_CODE, extra_env={"SOAK_SEED": spec})
    for line in out.splitlines():
        if line.startswith("L10BENCH "):
            data = json.loads(line.removeprefix("L10BENCH "))
            return common.Seed(tenant_id=int(data["tenant_id"]), token=str(data["token"])), data
    raise RuntimeError(f"seeding printed no token:\n{out}")


def main(argv: list[str]) -> int:
    size = SMALL if "--small" in argv else FULL
    seconds = soak_seconds([a for a in argv if a != "--small"], size)
    pinning = common.pin_client()
    started = time.monotonic()
    with own_redis_db(size.redis_db), common.own_stores(size.db, size.redis_db):
        common.flush_redis()
        common.recreate_database()
        seed, seeded = seed_soak(size)
        common.progress(f"tenant {seed.tenant_id} with {seeded['rules']} alert rules; {seeded['prices']}")
        django_setup()
        extra = server_extra(size)
        with tempfile.TemporaryDirectory(prefix="l10soak-") as folder:
            gc_log = Path(folder) / "collections.jsonl"
            with (
                common.server({**extra, GC_LOG_VARIABLE: str(gc_log)}, app=SERVER_APP) as srv,
                celery(size, Path(folder), extra) as cel,
            ):
                start_marks = {name: at for name, (_, at) in stored(seed.tenant_id, DEFAULT_HEARTBEAT).marks.items()}
                soaked: Soaked = run_loop(soak(size, seconds, srv.base_url, seed, srv.pid, cel, gc_log))
                interval = float(soaked.ingest.get("interval", size.heartbeat or DEFAULT_HEARTBEAT))
                found = stored(seed.tenant_id, interval)
            tasks = read_logs(cel)
    result = rows(size, soaked, found, tasks, start_marks)

    shares = ", ".join(f"{name} {share:.0%}" for name, share in soaked.cpu.items())
    cores = ", ".join(f"core {c} {b:.0%}" for c, b in sorted(soaked.cores.items()))
    print()
    print(f"L10 soak ({size.name}): CPython {platform.python_version()}, {common.server_version()}")
    print(
        f"{pinning}; the Celery worker and beat on core {common.SERVER_CORE} beside the server; everything on "
        f"{common.HOST}; {time.monotonic() - started:.0f} s in all"
    )
    print(
        f"the machine during the soak: {cores} busy (whoever used it); of a core, the soak's processes used "
        f"{shares}; load average {soaked.loadavg[0]:.2f}"
    )
    print()
    print_rows(result)
    failed = [r.figure for r in result if r.passed is False]
    print()
    if failed:
        print(f"FAILED checks: {', '.join(failed)}")
        return 1
    print("All checks passed.")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--ingest"]:
        ingest_main()
    else:
        sys.exit(main(sys.argv[1:]))
