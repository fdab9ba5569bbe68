"""Shared pieces of the benchmarks: a fresh database, the server under ``taskset``, the
table's rows and percentiles.

Everything here targets 127.0.0.1 only. The load generator (this process) runs on core 0
and the server on core 1, so on a 2-core machine they do not take turns on one core;
PostgreSQL and Redis are not pinned and run wherever the scheduler puts them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO, TypeVar

import httpx
import psycopg
from psycopg import sql

T = TypeVar("T")

# ``L10_BENCH_SIZE=small`` (``bench/run.py --small``, which ``make test`` runs for every
# bench): the same code paths at a size that takes seconds, in stores of their own, with
# no targets judged. A bench that no longer runs fails the tests, not next month's run.
SMALL = os.environ.get("L10_BENCH_SIZE", "").strip().lower() == "small"


def sized(full: T, small: T) -> T:
    """``full``, or ``small`` in a small run."""
    return small if SMALL else full


def db_name(name: str) -> str:
    """A bench's own database; a small run's is another, so the two never meet."""
    return f"{name}_small" if SMALL else name


def redis_db(number: int) -> int:
    """A bench's own Redis database (11 to 14); a small run's is that less 10 (1 to 4)."""
    return number - 10 if SMALL else number


AGENTS_VARIABLE = "L10_BENCH_AGENTS"


def bench_agents(default: int) -> int:
    """The fleet size a bench seeds: ``L10_BENCH_AGENTS`` (``make bench AGENTS=50000``), else
    ``default``. A value that is not a whole number of at least 100 stops the run."""
    raw = os.environ.get(AGENTS_VARIABLE, "").strip().replace("_", "").replace(",", "")
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 100:
        raise SystemExit(f"{AGENTS_VARIABLE} must be a whole number of at least 100, not {raw!r}")
    return int(raw)


ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
PYTHON = BIN / "python"
HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"
DB_NAME = db_name("l10bench")
REDIS_PORT = 6379
REDIS_DB = redis_db(14)  # the bench's own Redis database, flushed each run (the test suite uses 15)
CLIENT_CORE = 0
SERVER_CORE = 1
SERVER_START_SECONDS = 30.0


# --- the table ------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One figure of the table.

    ``better`` says which way is good. ``ratio`` is how many times the floor's cost the
    figure is: value/floor for latencies, floor/value for throughputs, so 3.0× reads
    "three times the raw data-store cost" either way. ``target`` is checked against
    ``value``: at most it when lower is better, at least it when higher is better.
    """

    figure: str
    unit: str
    value: float
    better: Literal["lower", "higher"] = "lower"
    target: float | None = None
    floor: float | None = None
    floor_label: str = ""
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.floor is None or self.floor <= 0 or self.value <= 0:
            return None
        return self.value / self.floor if self.better == "lower" else self.floor / self.value

    @property
    def passed(self) -> bool | None:
        if self.target is None or SMALL:  # a small run measures nothing worth a target
            return None
        return self.value <= self.target if self.better == "lower" else self.value >= self.target

    def target_text(self) -> str:
        if self.target is None:
            return "-"
        return ("≤ " if self.better == "lower" else "≥ ") + fmt(self.target, self.unit)


def fmt(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:.2f} ms"
    if abs(value) >= 1000:
        return f"{value:,.0f} {unit}"
    return f"{value:.1f} {unit}"


# --- statistics -----------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0–100), interpolated between the closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# --- processes ------------------------------------------------------------------------


def pin_client() -> str:
    """Pin this process (the load generator) to ``CLIENT_CORE``; describe what was done."""
    cores = os.sched_getaffinity(0)
    if cores == {CLIENT_CORE}:  # an earlier bench of this run pinned it
        return f"load generator on core {CLIENT_CORE}, server on core {SERVER_CORE}"
    if len(cores) < 2 or CLIENT_CORE not in cores or SERVER_CORE not in cores:
        return f"not pinned: this process may use cores {sorted(cores)} only"
    os.sched_setaffinity(0, {CLIENT_CORE})
    return f"load generator on core {CLIENT_CORE}, server on core {SERVER_CORE}"


@dataclass(frozen=True)
class Load:
    """What wrk measured: ``concurrency`` connections for ``seconds``."""

    concurrency: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds


_WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk_ms(text: str, label: str) -> float:
    found = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    if not found:
        raise RuntimeError(f"wrk printed no {label} latency:\n{text}")
    return float(found.group(1)) * _WRK_UNITS[found.group(2)]


def wrk(url: str, *, concurrency: int, seconds: float, headers: dict[str, str]) -> Load:
    """``concurrency`` keep-alive connections GETting ``url`` for ``seconds`` (wrk, one
    thread, on this process's core). Every answer must be a 2xx and no socket may fail."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk); the throughput phases need it")
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "30s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    done = subprocess.run([*command, url], capture_output=True, text=True, timeout=seconds + 60, check=True)
    out = done.stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw failed requests:\n{out}")
    total = re.search(r"(\d+) requests in ([\d.]+)(ms|s)", out)
    if not total:
        raise RuntimeError(f"wrk printed no request count:\n{out}")
    span = float(total.group(2)) * (0.001 if total.group(3) == "ms" else 1.0)
    return Load(concurrency, int(total.group(1)), span, _wrk_ms(out, "50%"), _wrk_ms(out, "99%"))


@contextlib.contextmanager
def own_stores(db_name: str, redis_db: int) -> Iterator[None]:
    """Point the helpers here (database, Redis db, the server's environment) at a run's own
    stores for the duration, so it never drops another run's database."""
    global DB_NAME, REDIS_DB
    saved = DB_NAME, REDIS_DB
    DB_NAME, REDIS_DB = db_name, redis_db
    try:
        yield
    finally:
        DB_NAME, REDIS_DB = saved


def server_env() -> dict[str, str]:
    """The environment of every Django process the benchmarks start."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("L10_")}
    env.update(
        DJANGO_SETTINGS_MODULE="l10console.settings",
        PYTHONUNBUFFERED="1",
        L10_POSTGRES_HOST=HOST,
        L10_POSTGRES_PORT=str(PG_PORT),
        L10_POSTGRES_USER=PG_USER,
        L10_POSTGRES_DB=DB_NAME,
        L10_REDIS_HOST=HOST,
        L10_REDIS_PORT=str(REDIS_PORT),
        L10_REDIS_DB=str(REDIS_DB),
        L10_SECRET_KEY="bench-only-not-a-secret",  # noqa: S106 - a throwaway server on 127.0.0.1
        L10_AUDIT_KEYS="bench:bench-only-audit-key-not-a-secret-0123",
        L10_DEBUG="0",
        L10_TLS="0",
        L10_INGEST_RATE_LIMIT="1000000",
    )
    return env


def manage(*args: str, extra_env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Run ``manage.py`` with the bench environment; its stdout, or an error with its output."""
    done = subprocess.run(
        [str(PYTHON), "manage.py", *args],
        cwd=ROOT,
        env={**server_env(), **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args[:1])} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Server:
    base_url: str
    pid: int


@contextlib.contextmanager
def server(extra_env: dict[str, str] | None = None, app: str = "l10console.asgi:application") -> Iterator[Server]:
    """uvicorn on 127.0.0.1, pinned to ``SERVER_CORE``; stopped (SIGTERM, then SIGKILL) on
    exit. ``extra_env`` adds to (or overrides) ``server_env()``; ``app`` is what uvicorn
    serves (the soak's wraps the console's)."""
    port = free_port()
    base_url = f"http://{HOST}:{port}"
    command = [
        "taskset",
        "-c",
        str(SERVER_CORE),
        str(BIN / "uvicorn"),
        app,
        "--host",
        HOST,
        "--port",
        str(port),
        "--lifespan",
        "on",
        "--log-level",
        "warning",
        "--ws-per-message-deflate",
        "false",  # as l10console.launch and the README's production command run it
    ]
    with tempfile.TemporaryFile(mode="w+", prefix="l10bench-server-") as log:
        # taskset execs uvicorn, so the child's pid is the server's.
        process = subprocess.Popen(
            command, cwd=ROOT, env={**server_env(), **(extra_env or {})}, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            _wait_healthy(process, base_url, log)
            progress(f"server pid {process.pid} on core(s) {describe_affinity(process.pid)} at {base_url}")
            yield Server(base_url=base_url, pid=process.pid)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
            log.seek(0)
            output = log.read().strip()
            if output:
                print(f"--- server output ({len(output.splitlines())} lines, last 20) ---", file=sys.stderr)
                print("\n".join(output.splitlines()[-20:]), file=sys.stderr)


def _wait_healthy(process: subprocess.Popen[bytes], base_url: str, log: Any) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"the server exited with {process.returncode} before answering:\n{log.read()}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server did not answer /healthz within {SERVER_START_SECONDS:.0f} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux ``/proc``), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def progress(message: str) -> None:
    """A progress line on stderr; the table goes to stdout."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def describe_affinity(pid: int) -> str:
    return ",".join(str(c) for c in sorted(os.sched_getaffinity(pid)))


# --- data stores ----------------------------------------------------------------------


def pg_connect(dbname: str = DB_NAME, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    return psycopg.connect(host=HOST, port=PG_PORT, user=PG_USER, dbname=dbname, autocommit=autocommit)


def recreate_database() -> None:
    """Drop ``DB_NAME`` and create it migrated, from empty tables: a copy of a template
    migrated once per set of migrations (``migrated_template``), where migrating each run's
    database took about 7 s."""
    template = migrated_template()
    with pg_connect("postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB_NAME)))
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(DB_NAME), sql.Identifier(template))
        )


TEMPLATE_PREFIX = "l10bench_migrated_"


def migrated_template() -> str:
    """The name of a database holding every migration of this checkout and nothing else,
    made (by ``manage.py migrate``) when no database of these migrations' digest exists;
    those of other digests are dropped."""
    global DB_NAME
    digest = hashlib.sha256()
    for path in sorted(ROOT.glob("*/migrations/*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    name = TEMPLATE_PREFIX + digest.hexdigest()[:16]
    with pg_connect("postgres", autocommit=True) as conn:
        found = [row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                                 [TEMPLATE_PREFIX + "%"])]  # fmt: skip
        if name in found:
            return name
        for old in found:  # of older migrations, or a build that died
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(old)))
        building = f"{name}_{os.getpid()}"
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(building)))
        saved, DB_NAME = DB_NAME, building
        try:
            manage("migrate", "--no-input")
        finally:
            DB_NAME = saved
        try:
            conn.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(building), sql.Identifier(name))
            )
        except psycopg.errors.DuplicateDatabase:  # another run made it meanwhile
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(building)))
    return name


def flush_redis() -> None:
    import redis

    redis.Redis(host=HOST, port=REDIS_PORT, db=REDIS_DB).flushdb()


def server_version() -> str:
    with pg_connect("postgres", autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return f"PostgreSQL {row[0] if row else '?'}"


@dataclass(frozen=True)
class Seed:
    tenant_id: int
    token: str


SEED_CODE = """
import json, os
from fleet.models import Agent
from tenancy import services
from tenancy.models import Tenant
spec = json.loads(os.environ["BENCH_SEED"])
tenant = Tenant.objects.create(slug=spec["slug"], name=spec["slug"])
_, plain = services.token_create(tenant=tenant, name="bench", created_by=None)
Agent.objects.bulk_create([Agent(tenant=tenant, external_id=x, name=x) for x in spec["agents"]], batch_size=500)
print("L10BENCH " + json.dumps({"tenant_id": tenant.pk, "token": plain}))
"""


def seed_tenant(slug: str, agents: Sequence[str] = ()) -> Seed:
    """A tenant with an API token and ``agents`` (by external id), through the app's own code."""
    spec = json.dumps({"slug": slug, "agents": list(agents)})
    out = manage("shell", "--no-imports", "-c", SEED_CODE, extra_env={"BENCH_SEED": spec})
    for line in out.splitlines():
        if line.startswith("L10BENCH "):
            data = json.loads(line.removeprefix("L10BENCH "))
            return Seed(tenant_id=int(data["tenant_id"]), token=str(data["token"]))
    raise RuntimeError(f"seeding printed no token:\n{out}")


# --- big tables, loaded in SQL -----------------------------------------------------------

# An agent's id is a function of its tenant and number (``md5('agent:<tenant>:<k>')``), so
# rows loaded after can name it without a join.
AGENTS_SQL = """
INSERT INTO fleet_agent (id, tenant_id, external_id, name, labels, desired_state, version, quotas, observed_state,
    observed_changed_at, last_heartbeat_at, registered_at, updated_at, delivered_version, pause_mode, pause_reason)
SELECT md5('agent:' || %(tenant)s || ':' || k)::uuid, %(tenant)s, 'worker-' || lpad(k::text, 5, '0'), 'Worker ' || k,
    jsonb_build_object('team', (ARRAY['search', 'billing', 'ingest', 'support'])[1 + k %% 4]), 'running', 1, '{}',
    'running', now() - interval '2 days', now(), now() - interval '40 days', now(), 1, 'after_task', ''
FROM generate_series(1, %(n)s) AS k
"""
INDEXES_SQL = """
SELECT i.relname, pg_get_indexdef(x.indexrelid), c.conname, pg_get_constraintdef(c.oid)
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
    LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.conrelid = x.indrelid
WHERE x.indrelid = %s::regclass AND NOT x.indisprimary
ORDER BY i.relname
"""


@dataclass
class BulkLoad:
    loaded_s: float = 0.0
    indexed_s: float = 0.0


@contextlib.contextmanager
def bulk_load(conn: psycopg.Connection[Any], table: str) -> Iterator[BulkLoad]:
    """Load ``table`` in one transaction without its indexes: its secondary indexes and
    unique constraints dropped, the per-row foreign-key triggers skipped (the rows are
    consistent by construction), then everything built again as the migrations made it
    (checked); then ``VACUUM ANALYZE`` and a checkpoint, so the load's dirty buffers are
    not written during the figures. Times the load and the indexing."""
    indexes = conn.execute(INDEXES_SQL, [table]).fetchall()
    done = BulkLoad()
    began = time.monotonic()
    with conn.transaction():
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute("SET LOCAL maintenance_work_mem = '512MB'")
        for name, _, constraint, _ in indexes:
            if constraint:
                conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                    sql.Identifier(table), sql.Identifier(constraint)))  # fmt: skip
            else:
                conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
        yield done
        done.loaded_s = time.monotonic() - began
        for _, definition, constraint, constraint_definition in indexes:
            if constraint:
                conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                    sql.Identifier(table), sql.Identifier(constraint), sql.SQL(constraint_definition)))  # fmt: skip
            else:
                conn.execute(sql.SQL(definition))
    done.indexed_s = time.monotonic() - began - done.loaded_s
    if conn.execute(INDEXES_SQL, [table]).fetchall() != indexes:
        raise AssertionError(f"{table}'s indexes are not those the migrations made")
    conn.execute(sql.SQL("VACUUM ANALYZE {}, fleet_agent").format(sql.Identifier(table)))
    conn.execute("CHECKPOINT")


class LineChild:
    """A load process on the client's core that speaks JSON lines: ``python -m MODULE
    ARGS``; each line it prints arrives on ``messages`` (an ``exited`` message last), and
    ``send`` writes a command line to its stdin."""

    def __init__(self, module: str, args: Sequence[str], env: dict[str, str], stderr: TextIO) -> None:
        command = ["taskset", "-c", str(CLIENT_CORE), str(PYTHON), "-m", module, *args]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with contextlib.suppress(ValueError):
                self.messages.put(json.loads(line))
        self.messages.put({"event": "exited", "returncode": self.process.wait()})

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        with contextlib.suppress(BrokenPipeError, ValueError):
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()


def run_child(code: str, args: Sequence[str], *, what: str, timeout: float = 7200) -> dict[str, Any]:
    """``code`` run with ``args`` in a process of its own on the client's core, with this
    run's stores and size (``server_env``); what it printed after ``L10BENCH ``, as JSON."""
    done = subprocess.run(
        ["taskset", "-c", str(CLIENT_CORE), sys.executable, "-c", code, *args],
        cwd=ROOT, env={**server_env(), "L10_BENCH_SIZE": "small" if SMALL else ""},
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(f"the {what} process failed: {done.stderr[-3000:]}")
    line = next(x for x in reversed(done.stdout.splitlines()) if x.startswith("L10BENCH "))
    answer: dict[str, Any] = json.loads(line.removeprefix("L10BENCH "))
    return answer
