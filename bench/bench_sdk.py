"""The agent SDK's cost on the caller's thread: ``agent.record_usage(...)``, beside a floor.

The target: the SDK's overhead per recorded usage event is under 50 µs on the
caller's thread. ``record_usage`` must not do I/O; it builds a record (a uuid4 and a
timestamp), counts it, and appends it to a bounded buffer that the SDK's background thread
sends in batches.

Floor: the cheapest comparable work, a function with the same signature that appends the
arguments, as a tuple, to a ``collections.deque`` under a ``threading.Lock``. SDK and floor
run in alternating blocks in this process (on the load generator's core), so both see the
same machine, with a 5 ms pause between blocks so the SDK thread's queued work (it runs on
the same core) lands between blocks rather than in the floor's. Two kinds of block alternate as well:

- calls timed one by one (``perf_counter_ns`` around each call: per-call p50/p99/max; the
  timer pair costs about 0.1 µs and is in both the SDK's and the floor's figures);
- batches of ``BATCH`` calls timed as a whole (no timer per call): the mean per call, and
  the p99 of the batch means.

Modes, each its own ``Agent``:

1. ``no console``: pointed at a closed port on 127.0.0.1, so the SDK thread only retries
   registration; the buffer only grows (``buffer_limit`` is larger than every call made, so
   nothing is dropped). The pure cost of the call.
2. ``live console``: pointed at a running console (uvicorn on core 1, PostgreSQL, Redis);
   while the calls run, the SDK's thread sends the records in batches on the same core and
   competes for the GIL, as it would in an agent. Afterwards the buffer is flushed and the
   usage rows in the database are counted against the calls made.
3. ``drop path``: a closed port and a full buffer (``buffer_limit`` ``DROP_LIMIT``), so every call
   drops the oldest record; checked against ``agent.dropped``.
4. ``no wake`` (context): a closed port with ``batch_size`` larger than the calls made, so
   the buffer never reaches a batch and the SDK never wakes its thread from the call: what
   mode 1 costs without the wake-up.
"""

from __future__ import annotations

import collections
import gc
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from l10_agent import Agent

from bench import common
from bench.common import Row

CALLS = common.sized(100_000, 4_000)  # per mode, as many for the floor; half timed one by one, half in batches
BLOCK = common.sized(2_000, 500)  # SDK and floor alternate in blocks of this many calls
BATCH = 100  # calls per timed batch
# A pause between blocks lets the SDK thread run what the calls queued for it (wake-ups,
# sends), so that work is not charged to the floor's block that follows.
SETTLE_SECONDS = 0.005
WARMUP = common.sized(2_000, 200)
MODE_SECONDS = common.sized(60.0, 10.0)  # each mode stops at CALLS or this, whichever comes first
TARGET_US = 50.0
BIG_BUFFER = 10 * CALLS  # never reached: no drops in modes 1, 2 and 4
DROP_LIMIT = common.sized(1_000, 100)
REGISTER_SECONDS = 30.0
FLUSH_SECONDS = common.sized(180.0, 60.0)
UUID_BATCHES = common.sized(20, 5)  # of 1,000 each

MODEL = "gpt-4o"
INPUT_TOKENS, OUTPUT_TOKENS = 1200, 350
TENANT_SLUG = "bench-sdk"

Record = Callable[..., None]


class FloorBuffer:
    """The floor: the arguments, as a tuple, appended to a deque under a lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: collections.deque[tuple[str, int, int, int]] = collections.deque()

    def record(self, model: str, input_tokens: int = 0, output_tokens: int = 0, api_calls: int = 1) -> None:
        with self.lock:
            self.items.append((model, input_tokens, output_tokens, api_calls))


@dataclass
class Timings:
    per_call_ns: list[int]
    batch_mean_ns: list[float]

    @property
    def calls(self) -> int:
        return len(self.per_call_ns) + len(self.batch_mean_ns) * BATCH

    def mean_us(self) -> float:
        return sum(self.batch_mean_ns) / len(self.batch_mean_ns) / 1000

    def call_us(self, q: float) -> float:
        return common.percentile(self.per_call_ns, q) / 1000

    def batch_us(self, q: float) -> float:
        return common.percentile(self.batch_mean_ns, q) / 1000

    def max_us(self) -> float:
        return max(self.per_call_ns) / 1000


def _one_by_one(record: Record, count: int, out: list[int]) -> None:
    clock = time.perf_counter_ns
    append = out.append
    for _ in range(count):
        start = clock()
        record(MODEL, INPUT_TOKENS, OUTPUT_TOKENS)
        append(clock() - start)


def _in_batches(record: Record, count: int, out: list[float]) -> None:
    clock = time.perf_counter_ns
    inner = range(BATCH)
    for _ in range(count // BATCH):
        start = clock()
        for _ in inner:
            record(MODEL, INPUT_TOKENS, OUTPUT_TOKENS)
        out.append((clock() - start) / BATCH)


def measure(sdk: Record, floor: Record) -> tuple[Timings, Timings]:
    """SDK and floor in alternating blocks: one-by-one, then batched, until CALLS or the time is up."""
    for _ in range(WARMUP // BATCH):
        _in_batches(sdk, BATCH, [])
        _in_batches(floor, BATCH, [])
    s, f = Timings([], []), Timings([], [])
    deadline = time.monotonic() + MODE_SECONDS
    while s.calls < CALLS and time.monotonic() < deadline:
        n = min(BLOCK, (CALLS - s.calls) // 2 // BATCH * BATCH) or BATCH
        _one_by_one(sdk, n, s.per_call_ns)
        time.sleep(SETTLE_SECONDS)
        _one_by_one(floor, n, f.per_call_ns)
        time.sleep(SETTLE_SECONDS)
        _in_batches(sdk, n, s.batch_mean_ns)
        time.sleep(SETTLE_SECONDS)
        _in_batches(floor, n, f.batch_mean_ns)
        time.sleep(SETTLE_SECONDS)
    return s, f


def _rows(mode: str, s: Timings, f: Timings, note: str, *, p99_row: bool = True) -> list[Row]:
    detail = (
        f"n={s.calls} ({len(s.per_call_ns)} timed one by one, {len(s.batch_mean_ns)} batches of {BATCH}); "
        f"per call p50 {s.call_us(50):.2f} µs, p99 {s.call_us(99):.2f}, p99.9 {s.call_us(99.9):.1f}, "
        f"max {s.max_us():,.0f} µs; p99 of batch means {s.batch_us(99):.2f} µs; "
        f"floor per call p50 {f.call_us(50):.2f} µs, p99 {f.call_us(99):.2f}, max {f.max_us():,.0f} µs, "
        f"mean {f.mean_us():.2f} µs"
    )
    rows = [
        Row(
            f"record_usage mean, {mode}",
            "µs",
            s.mean_us(),
            target=TARGET_US,
            floor=f.mean_us(),
            note=f"{note}; {detail}",
        )
    ]
    if p99_row:
        rows.append(
            Row(
                f"record_usage p99, {mode}",
                "µs",
                s.call_us(99),
                target=TARGET_US,
                floor=f.call_us(99),
                note=f"per call, timed one by one ({len(s.per_call_ns)} calls); "
                f"p99 of {BATCH}-call batch means {s.batch_us(99):.2f} µs (floor {f.batch_us(99):.2f} µs)",
            )
        )
    return rows


def _closed_url() -> str:
    """A port on 127.0.0.1 that nothing listens on: connections are refused at once."""
    return f"http://{common.HOST}:{common.free_port()}"


def _agent(url: str, token: str, external_id: str, **kwargs: Any) -> Agent:
    return Agent(url, token, external_id, socket=False, **kwargs)


def _usage_rows(tenant_id: int, external_id: str) -> int:
    with common.pg_connect() as conn:
        row = conn.execute(
            "SELECT count(*) FROM costs_usagerecord u JOIN fleet_agent a ON a.id = u.agent_id "
            "WHERE a.tenant_id = %s AND a.external_id = %s",
            (tenant_id, external_id),
        ).fetchone()
    assert row is not None
    return int(row[0])


def no_console() -> list[Row]:
    agent = _agent(_closed_url(), "l10_not-a-real-token", "sdk-closed", buffer_limit=BIG_BUFFER)
    try:
        s, f = measure(agent.record_usage, FloorBuffer().record)
        made = WARMUP + s.calls
        assert agent.buffered["usage"] == made, f"{agent.buffered['usage']} buffered, {made} recorded"
        assert agent.dropped["usage"] == 0
    finally:
        agent.close(timeout=0.1, graceful=False)
    note = "Agent at a closed port on 127.0.0.1 (no I/O can succeed; the SDK thread retries registration)"
    return _rows("no console", s, f, f"{note}; buffer {agent.buffered['usage']:,} records, none dropped")


def no_wake() -> list[Row]:
    agent = _agent(_closed_url(), "l10_not-a-real-token", "sdk-nowake", buffer_limit=BIG_BUFFER, batch_size=BIG_BUFFER)
    try:
        s, f = measure(agent.record_usage, FloorBuffer().record)
        assert agent.dropped["usage"] == 0
    finally:
        agent.close(timeout=0.1, graceful=False)
    note = (
        "(context) as 'no console' but batch_size > the calls made, so record_usage never calls "
        "_wake() (loop.call_soon_threadsafe, a self-pipe write and a wake-up of the SDK thread)"
    )
    return _rows("no wake (context)", s, f, note, p99_row=False)


def drop_path() -> list[Row]:
    agent = _agent(_closed_url(), "l10_not-a-real-token", "sdk-drop", buffer_limit=DROP_LIMIT)
    try:
        for _ in range(DROP_LIMIT):
            agent.record_usage(MODEL, INPUT_TOKENS, OUTPUT_TOKENS)
        s, f = measure(agent.record_usage, FloorBuffer().record)
        made = DROP_LIMIT + WARMUP + s.calls
        assert agent.buffered["usage"] == DROP_LIMIT
        assert agent.dropped["usage"] == made - DROP_LIMIT, f"{agent.dropped['usage']} dropped of {made}"
    finally:
        agent.close(timeout=0.1, graceful=False)
    note = f"closed port, buffer_limit {DROP_LIMIT:,} and full: every call drops the oldest record (counted, checked)"
    return _rows("drop path", s, f, note, p99_row=False)


def live_console(srv: common.Server, seed: common.Seed) -> list[Row]:
    external_id = "sdk-live"
    agent = Agent(srv.base_url, seed.token, external_id, buffer_limit=BIG_BUFFER)
    try:
        if not agent.registered.wait(REGISTER_SECONDS):
            raise AssertionError(f"the agent did not register with {srv.base_url} in {REGISTER_SECONDS:.0f} s")
        cpu = common.cpu_seconds(srv.pid)
        begun = time.monotonic()
        s, f = measure(agent.record_usage, FloorBuffer().record)
        measured = time.monotonic() - begun
        backlog = agent.buffered["usage"]
        made = WARMUP + s.calls
        flush_begun = time.monotonic()
        while agent.buffered["usage"] and time.monotonic() - flush_begun < FLUSH_SECONDS:
            agent.flush(timeout=10.0)
        drained = time.monotonic() - flush_begun
        server_cpu = common.cpu_seconds(srv.pid) - cpu
        assert agent.buffered["usage"] == 0, f"{agent.buffered['usage']} usage records still buffered"
        assert agent.dropped["usage"] == agent.rejected["usage"] == 0, (agent.dropped, agent.rejected)
        stored = _usage_rows(seed.tenant_id, external_id)
        assert stored == made, f"{stored} usage rows stored, {made} recorded"
    finally:
        agent.close(timeout=10.0)
    note = (
        f"Agent registered with the console at {srv.base_url} (server on core {common.SERVER_CORE}); "
        f"the SDK thread sent batches of 500 during the {measured:.1f} s of calls on the same core "
        f"({backlog:,} records were still buffered at the end, drained in {drained:.1f} s); "
        f"all {made:,} usage rows counted in PostgreSQL; server CPU {server_cpu:.1f} s"
    )
    return _rows("live console", s, f, note)


def uuid_cost() -> Row:
    """Context: uuid4 + time.time(), which every record pays, beside the floor."""
    floor = FloorBuffer().record
    u: list[float] = []
    fl: list[float] = []
    clock = time.perf_counter_ns
    new, now = uuid.uuid4, time.time
    for _ in range(UUID_BATCHES):
        start = clock()
        for _ in range(1000):
            new()
            now()
        u.append((clock() - start) / 1000)
        start = clock()
        for _ in range(1000):
            floor(MODEL, INPUT_TOKENS, OUTPUT_TOKENS)
        fl.append((clock() - start) / 1000)
    return Row(
        "uuid.uuid4() + time.time() (context)",
        "µs",
        common.percentile(u, 50) / 1000,
        floor=common.percentile(fl, 50) / 1000,
        note="what every record_usage pays to build its record (uuid4 reads os.urandom: a getrandom syscall); "
        f"median of {UUID_BATCHES} batches of 1,000",
    )


def run() -> list[Row]:
    common.flush_redis()
    common.recreate_database()
    seed = common.seed_tenant(TENANT_SLUG)
    gc.collect()
    rows = no_console()
    with common.server() as srv:
        rows += live_console(srv, seed)
    rows += drop_path()
    rows += no_wake()
    rows.append(uuid_cost())
    return rows
