"""Control over HTTP: pause and resume latency, beside the whole operation's raw-store floor.

The targets: ``POST /api/v1/agents/{id}/pause|resume`` p50 under 10 ms and p99 under 25 ms
(docs/performance.md, "Control"; the same work without Django cost 1.5 ms p50, 2.3 ms p99).

Data (its own PostgreSQL database and Redis database, so it can run beside the other
benchmarks): after ``migrate``, through the app's own code in ``manage.py shell``, one
tenant, one operator member with a personal token, ``AGENTS`` agents for the API and as
many for the floor (separate rows, so neither loop changes the other's), all running and
each having reported (a heartbeat with metrics), as the live agents an operator controls have.

- API: sequential POSTs over one keep-alive connection to uvicorn (core 1) from this
  process (core 0). Request k goes to agent ``k % AGENTS`` and pauses it in even rounds,
  resumes it in odd ones, so every request makes a real change (a version bump, an audit
  row, an event); each carries a fresh ``Idempotency-Key``. Every answer is checked
  (200, ``success``, the new state, the version one higher than the last).
- Floor: the same operation with psycopg and redis-py from this process, no Django, on
  the app's tables (``control.services``, ``control.locks``, ``audit.services``): the
  Redis lock ``SET l10:lock:agent:<id> <token> NX PX``; one transaction (the idempotency
  claim ``INSERT … ON CONFLICT DO NOTHING RETURNING``, ``SELECT … FOR UPDATE`` of the
  agent, the versioned ``UPDATE``, the audit ``INSERT``, the ``UPDATE`` storing the
  answer, ``COMMIT`` with its fsync); the Lua compare-and-delete release; one ``PUBLISH``
  (the app's after-commit work, a Lua ``INCR`` + ``PUBLISH`` and the cache generation's
  ``INCR``, is about the cost of one such call each). Client-side binding, as Django's
  PostgreSQL backend does. API and floor run in alternating blocks so both see the same
  machine.
- Replay of a finished key (informational): earlier timed requests sent again with the
  same key and body; the answer must be the stored one with ``Idempotent-Replayed: true``
  and no new audit row. Floor: the one ``SELECT`` of the stored answer by its key.
- Context: ``GET /healthz`` on the same connection (the ASGI and middleware path with no
  store), and how busy the two cores were during the timed loop (the machine is shared).

Server CPU per request is the uvicorn process's user + system time over the API blocks
(``/proc/<pid>/stat``), divided by their requests.

After the loops the database is counted against what was sent (audit rows, idempotency
records, agent versions), so no figure is reported for work that was not done.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import redis
from psycopg.types.json import Jsonb

from bench import common
from bench.bench_dashboard import Usage
from bench.common import Row

DB_NAME = common.db_name("l10bench_control")
REDIS_DB = common.redis_db(11)  # benchmarks use 14, the dashboard 13, approvals 12, the soak 6, the test suite 15

AGENTS = common.sized(200, 10)  # each, API and floor
WARMUP = AGENTS  # API and floor each; one round of pauses
COUNT = common.sized(1000, 40)  # each, API and floor
SECONDS = common.sized(60.0, 10.0)  # for API and floor together; the loop stops at whichever comes first
BLOCK = common.sized(100, 10)  # API and floor alternate in blocks of this many
REPLAYS = common.sized(300, 10)
HEALTHZ = common.sized(500, 20)
TARGET_P50_MS = 10.0
TARGET_P99_MS = 25.0
BULK_AGENTS = common.sized(1000, 20)
TARGET_BULK_S = 5.0
# A bulk pause, as the batch task runs it: 1,000 more agents, one batch, timed from the
# start (the preview's selection and the batch's rows) to its last item. The agents report
# once first, as SEED_CODE's do (live agents are what an operator pauses).
BULK_CODE = """
import json, os, time, types
from audit.services import Actor
from control.bulk import bulk_preview, bulk_run, bulk_select, bulk_start
from control.rules import Action
from fleet import services as fleet_services
from fleet.models import Agent
from tenancy.models import Membership
spec = json.loads(os.environ["BENCH_SPEC"])
member = Membership.objects.select_related("tenant", "user").get(tenant__slug=spec["slug"], user__username=spec["username"])
Agent.objects.bulk_create(
    Agent(tenant=member.tenant, external_id=f"bulk-{n:04d}", name=f"Bulk {n}", labels={"batch": "bench"})
    for n in range(spec["count"])
)
reading = types.SimpleNamespace(cpu_percent=35.0, memory_mb=800.0, tokens=900, requests=6, errors=0, latency_p95_ms=240.0)
for n in range(spec["count"]):
    fleet_services.agent_heartbeat(tenant=member.tenant, external_id=f"bulk-{n:04d}", state="running", reading=reading)
reported = Agent.objects.filter(tenant=member.tenant, labels__batch="bench", last_heartbeat_at__isnull=False).count()
started = time.perf_counter()
agents = bulk_select(member.tenant, selector="batch=bench")
preview = bulk_preview(Action.PAUSE, agents)
batch = bulk_start(tenant=member.tenant, actor=Actor(user=member.user), action=Action.PAUSE, agents=agents)
progress = bulk_run(batch.pk)
elapsed = time.perf_counter() - started
paused = Agent.objects.filter(tenant=member.tenant, labels__batch="bench", desired_state="paused").count()
print("L10BENCH " + json.dumps({"seconds": elapsed, "counts": progress["counts"], "paused": paused, "will": len(preview.change), "reported": reported}))
"""

TENANT_SLUG = "bench-control"
USERNAME = "bench-operator"
REASON = "bench"
USER_AGENT = "l10-bench-control"
# The app's settings these mirror (L10_CONTROL_LOCK_TTL, L10_CONTROL_IDEMPOTENCY_TTL).
LOCK_TTL_MS = 30_000
IDEMPOTENCY_TTL = timedelta(days=1)

# Every seeded agent reports (a heartbeat with metrics, through the app's service) before it
# is controlled: in production an operator pauses live agents, which are observed running,
# carry their latest metrics and have a minute row; an agent that never reported is not
# what the control path meets.
SEED_CODE = """
import json, os, types
from django.contrib.auth import get_user_model
from fleet import services as fleet_services
from fleet.models import Agent
from tenancy.models import Membership, Role, Tenant
from tenancy.services import personal_token_create
spec = json.loads(os.environ["BENCH_SPEC"])
tenant = Tenant.objects.create(slug=spec["slug"], name="Bench control")
user = get_user_model().objects.create_user(spec["username"])
Membership.objects.create(user=user, tenant=tenant, role=Role.OPERATOR)
_, plain = personal_token_create(user=user, name="bench")
Agent.objects.bulk_create([Agent(tenant=tenant, external_id=x, name=x) for x in spec["agents"]], batch_size=500)
reading = types.SimpleNamespace(cpu_percent=35.0, memory_mb=800.0, tokens=900, requests=6, errors=0, latency_p95_ms=240.0)
for x in spec["agents"]:
    fleet_services.agent_heartbeat(tenant=tenant, external_id=x, state="running", reading=reading)
print("L10BENCH " + json.dumps({"tenant_id": tenant.pk, "user_id": user.pk, "token": plain}))
"""

# control.locks.RELEASE_LUA
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

# The control operation's statements (control/sql.py, control.services._apply), written out as
# one raw transaction: the floor.
CLAIM = (
    "INSERT INTO control_idempotencyrecord "
    "(tenant_id, caller, key, fingerprint, status_code, response, created_at, expires_at) "
    "VALUES (%s, %s, %s, %s, 0, %s, %s, %s) "
    "ON CONFLICT (tenant_id, caller, key) DO NOTHING RETURNING id"
)
LOCK_ROW = "SELECT id, tenant_id, external_id, desired_state, version, quotas FROM fleet_agent WHERE id = %s FOR UPDATE"
# fleet.services.desired_state_apply's columns: a pause keeps its reason, any other
# state clears the pause; either clears an unconfirmed stop.
SET_STATE = (
    "UPDATE fleet_agent SET desired_state = %s, desired_changed_at = %s, desired_changed_by_id = %s, "
    "pause_reason = %s, pause_until = NULL, pause_mode = 'after_task', stop_unconfirmed_at = NULL, "
    "version = version + 1, updated_at = %s WHERE id = %s AND version = %s"
)
AUDIT = (
    "INSERT INTO audit_auditentry (tenant_id, occurred_at, actor_id, actor_label, ip, user_agent, action, "
    "resource_type, resource_id, reason, delta, outcome, error_code, idempotency_key, request_id, batch_id) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, 'agent', %s, %s, %s, 'success', '', %s, %s, NULL) RETURNING id"
)
STORE_ANSWER = "UPDATE control_idempotencyrecord SET status_code = 200, response = %s WHERE id = %s"
# control.sql.stored_answer
STORED_ANSWER = (
    "SELECT id, fingerprint, status_code, response FROM control_idempotencyrecord "
    "WHERE tenant_id = %s AND caller = %s AND key = %s AND expires_at > %s"
)


@dataclass(frozen=True)
class Seeded:
    tenant_id: int
    user_id: int
    token: str
    api_agents: list[str]  # ids (uuid text), in request order
    floor_agents: list[str]
    versions: dict[str, int]  # each agent's version after seeding

    @property
    def caller(self) -> str:
        return f"user:{self.user_id}"  # control.services._caller


def _pg(*, autocommit: bool = True) -> psycopg.Connection[Any]:
    # By name: ``common.pg_connect``'s default database is fixed when common is imported.
    return common.pg_connect(DB_NAME, autocommit=autocommit)


def run() -> list[Row]:
    with common.own_stores(DB_NAME, REDIS_DB):
        common.flush_redis()
        common.recreate_database()
        seeded = seed()
        with common.server() as srv:
            rows = measure(srv, seeded)
        floor_p50_ms = next(r.floor for r in rows if r.figure == "control pause/resume p50")
        return [*rows, bulk(floor_p50_ms or 0.0)]


def bulk(floor_p50_ms: float) -> Row:
    spec = {"slug": TENANT_SLUG, "username": USERNAME, "count": BULK_AGENTS}
    out = common.manage("shell", "--no-imports", "-c", BULK_CODE, extra_env={"BENCH_SPEC": json.dumps(spec)})
    line = next(x for x in out.splitlines() if x.startswith("L10BENCH "))
    data = json.loads(line.removeprefix("L10BENCH "))
    assert data["paused"] == BULK_AGENTS == data["will"] == data["reported"], data
    assert data["counts"] == {"success": BULK_AGENTS}, data
    return Row(
        f"bulk pause of {BULK_AGENTS:,} agents",
        "s",
        float(data["seconds"]),
        target=TARGET_BULK_S,
        floor=floor_p50_ms * BULK_AGENTS / 1000,
        note=f"selection by label, preview, batch rows and every item through the control service (lock, "
        f"transaction, audit row, event), one process as the batch task runs it; all {BULK_AGENTS} paused; "
        f"floor: {BULK_AGENTS} times the raw operation's p50",
    )


def seed() -> Seeded:
    api = [f"ctl-{i:03d}" for i in range(AGENTS)]
    floor = [f"ctlf-{i:03d}" for i in range(AGENTS)]
    spec = {"slug": TENANT_SLUG, "username": USERNAME, "agents": api + floor}
    out = common.manage("shell", "--no-imports", "-c", SEED_CODE, extra_env={"BENCH_SPEC": json.dumps(spec)})
    data: dict[str, Any] | None = None
    for line in out.splitlines():
        if line.startswith("L10BENCH "):
            data = json.loads(line.removeprefix("L10BENCH "))
    if data is None:
        raise RuntimeError(f"seeding printed no token:\n{out}")
    tenant_id = int(data["tenant_id"])
    with _pg() as conn:
        found = conn.execute(
            "SELECT external_id, id::text, version FROM fleet_agent WHERE tenant_id = %s AND desired_state = 'running' "
            "AND observed_state = 'running' AND last_heartbeat_at IS NOT NULL AND metrics_at IS NOT NULL",
            (tenant_id,),
        ).fetchall()
        conn.execute("VACUUM ANALYZE")
    assert len(found) == 2 * AGENTS, f"seeding made {len(found)} running, reporting agents, not {2 * AGENTS}"
    ids = {external_id: agent_id for external_id, agent_id, _ in found}
    return Seeded(
        tenant_id=tenant_id,
        user_id=int(data["user_id"]),
        token=str(data["token"]),
        api_agents=[ids[x] for x in api],
        floor_agents=[ids[x] for x in floor],
        versions={agent_id: int(version) for _, agent_id, version in found},
    )


# --- the two loops ------------------------------------------------------------------------


def _plan(k: int, agents: list[str]) -> tuple[str, str, str, str]:
    """Request k: (agent id, action, the state before, the state after)."""
    agent = agents[k % len(agents)]
    if (k // len(agents)) % 2 == 0:
        return agent, "pause", "running", "paused"
    return agent, "resume", "paused", "running"


def _healthz(client: httpx.Client) -> float:
    start = time.perf_counter()
    response = client.get("/healthz")
    elapsed = time.perf_counter() - start
    _expect(response, 200)
    return elapsed * 1000


def _expect(response: httpx.Response, status: int) -> None:
    if response.status_code != status:
        raise AssertionError(
            f"{response.request.method} {response.request.url.path}: {response.status_code}, "
            f"expected {status}: {response.text[:500]}"
        )


@dataclass(frozen=True)
class Sent:
    path: str
    key: str
    answer: dict[str, Any]


class ApiControl:
    """Request k of the API loop over one keep-alive connection, its answer checked."""

    def __init__(self, client: httpx.Client, seeded: Seeded, nonce: str) -> None:
        self.client = client
        self.agents = seeded.api_agents
        self.nonce = nonce
        self.body = json.dumps({"reason": REASON}).encode()
        self.versions = {a: seeded.versions[a] for a in self.agents}
        self.sent: list[Sent] = []

    def __call__(self, k: int) -> float:
        agent, action, before, after = _plan(k, self.agents)
        path = f"/api/v1/agents/{agent}/{action}"
        key = f"api-{self.nonce}-{k}"
        start = time.perf_counter()
        response = self.client.post(path, content=self.body, headers={"Idempotency-Key": key})
        elapsed = time.perf_counter() - start
        _expect(response, 200)
        answer = response.json()
        version = self.versions[agent] + 1
        expected = {"status": "success", "previous_state": before, "new_state": after, "version": version}
        if {name: answer.get(name) for name in expected} != expected or response.headers.get("Idempotent-Replayed"):
            raise AssertionError(f"{action} #{k} of {agent}: {response.text[:300]}, expected {expected}")
        self.versions[agent] = version
        self.sent.append(Sent(path, key, answer))
        return elapsed * 1000

    def replay(self, sent: Sent) -> float:
        start = time.perf_counter()
        response = self.client.post(sent.path, content=self.body, headers={"Idempotency-Key": sent.key})
        elapsed = time.perf_counter() - start
        _expect(response, 200)
        if response.headers.get("Idempotent-Replayed") != "true" or response.json() != sent.answer:
            raise AssertionError(f"replay of {sent.key}: {response.text[:300]}, expected {sent.answer}")
        return elapsed * 1000


class FloorControl:
    """The whole control operation with psycopg and redis-py, no Django."""

    def __init__(self, seeded: Seeded, nonce: str) -> None:
        self.conn = _pg(autocommit=False)  # a transaction per operation, committed explicitly
        # Client-side binding, as Django's PostgreSQL backend uses by default.
        self.conn.cursor_factory = psycopg.ClientCursor
        self.reader = _pg()  # autocommit: the replay's lookup runs outside a transaction, as the app's does
        self.reader.cursor_factory = psycopg.ClientCursor
        self.redis = redis.Redis(host=common.HOST, port=common.REDIS_PORT, db=REDIS_DB, socket_timeout=5)
        self.release = self.redis.register_script(RELEASE_LUA)
        self.seeded = seeded
        self.agents = seeded.floor_agents
        self.nonce = nonce
        self.channel = f"l10bench:control:{nonce}"  # nobody listens: the cost of a PUBLISH alone
        self.versions = {a: seeded.versions[a] for a in self.agents}
        self.keys: list[str] = []

    def __call__(self, k: int) -> float:
        agent, action, before, after = _plan(k, self.agents)
        key = f"floor-{self.nonce}-{k}"
        s = self.seeded
        body = {"action": action, "agent": agent, "reason": REASON, "quota_type": None, "period": "day"}
        fingerprint = hashlib.sha256(json.dumps({**body, "new_limit": None}, sort_keys=True).encode()).hexdigest()
        lock = f"l10:lock:agent:{agent}"
        token = secrets.token_hex(16)

        start = time.perf_counter()
        now = datetime.now(UTC)
        if not self.redis.set(lock, token, nx=True, px=LOCK_TTL_MS):
            raise AssertionError(f"floor: the lock of {agent} is held")
        with self.conn.cursor() as cur:
            claimed = cur.execute(
                CLAIM, (s.tenant_id, s.caller, key, fingerprint, Jsonb({}), now, now + IDEMPOTENCY_TTL)
            ).fetchone()
            if claimed is None:
                raise AssertionError(f"floor: key {key} was claimed already")
            row = cur.execute(LOCK_ROW, (agent,)).fetchone()
            if row is None or row[3] != before:
                raise AssertionError(f"floor: agent {agent} is {row}, expected {before}")
            version = int(row[4])
            pause_reason = REASON if action == "pause" else ""
            cur.execute(SET_STATE, (after, now, s.user_id, pause_reason, now, agent, version))
            if cur.rowcount != 1:
                raise AssertionError(f"floor: agent {agent} moved past version {version}")
            delta = {"desired_state": {"from": before, "to": after}}
            cur.execute(
                AUDIT,
                (s.tenant_id, now, s.user_id, USERNAME, common.HOST, USER_AGENT, f"agent.{action}", agent, REASON,
                 Jsonb(delta), key, secrets.token_hex(8)),
            )  # fmt: skip
            answer = {
                "status": "success",
                "action": action,
                "agent_id": agent,
                "previous_state": before,
                "new_state": after,
                "version": version + 1,
                "message": f"{action.capitalize()} sent to the agent.",
            }
            cur.execute(STORE_ANSWER, (Jsonb(answer), claimed[0]))
        self.conn.commit()
        if self.release(keys=[lock], args=[token]) != 1:
            raise AssertionError(f"floor: the lock of {agent} was not ours at release")
        self.redis.publish(self.channel, json.dumps(answer))
        elapsed = time.perf_counter() - start

        self.versions[agent] = version + 1
        self.keys.append(key)
        return elapsed * 1000

    def replay(self, key: str) -> float:
        s = self.seeded
        start = time.perf_counter()
        with self.reader.cursor() as cur:
            row = cur.execute(STORED_ANSWER, (s.tenant_id, s.caller, key, datetime.now(UTC))).fetchone()
        elapsed = time.perf_counter() - start
        if row is None or row[2] != 200:
            raise AssertionError(f"floor replay of {key}: {row}")
        return elapsed * 1000

    def close(self) -> None:
        self.conn.close()
        self.reader.close()
        self.redis.close()


def measure(srv: common.Server, seeded: Seeded) -> list[Row]:
    nonce = secrets.token_hex(4)
    headers = {
        "Authorization": f"Bearer {seeded.token}",
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
    }
    floor = FloorControl(seeded, nonce)
    try:
        with httpx.Client(base_url=srv.base_url, headers=headers, timeout=30.0) as client:
            api = ApiControl(client, seeded, nonce)
            for k in range(WARMUP):
                api(k)
                floor(k)
            audit_before = _audit_rows(seeded.tenant_id)
            usage = Usage(srv.pid)

            api_ms: list[float] = []
            floor_ms: list[float] = []
            server_cpu = 0.0
            deadline = time.monotonic() + SECONDS
            # API and floor take turns in blocks, so both see the same machine.
            while len(api_ms) < COUNT and time.monotonic() < deadline:
                cpu = common.cpu_seconds(srv.pid)
                for _ in range(min(BLOCK, COUNT - len(api_ms))):
                    api_ms.append(api(WARMUP + len(api_ms)))
                server_cpu += common.cpu_seconds(srv.pid) - cpu
                for _ in range(min(BLOCK, COUNT - len(floor_ms))):
                    floor_ms.append(floor(WARMUP + len(floor_ms)))
            busy = usage.row()
            audit_after = _audit_rows(seeded.tenant_id)

            # Replays: timed requests spread over the loop, each sent again as it was.
            timed = api.sent[WARMUP:]
            step = max(1, len(timed) // REPLAYS)
            again = timed[::step][:REPLAYS]
            floor_keys = floor.keys[WARMUP:][::step][: len(again)]
            replay_cpu = common.cpu_seconds(srv.pid)
            replay_ms = [api.replay(sent) for sent in again]
            replay_cpu = common.cpu_seconds(srv.pid) - replay_cpu
            replay_floor_ms = [floor.replay(key) for key in floor_keys]

            healthz_cpu = common.cpu_seconds(srv.pid)
            healthz_ms = [_healthz(client) for _ in range(HEALTHZ)]
            healthz_cpu = common.cpu_seconds(srv.pid) - healthz_cpu
    finally:
        floor.close()

    _check(seeded, api, floor, audit_before, audit_after, len(api_ms), len(floor_ms))
    assert _audit_rows(seeded.tenant_id) == audit_after, "a replay wrote an audit row"

    p50, p99 = common.percentile(api_ms, 50), common.percentile(api_ms, 99)
    f50, f99 = common.percentile(floor_ms, 50), common.percentile(floor_ms, 99)
    return [
        Row(
            "control pause/resume p50",
            "ms",
            p50,
            target=TARGET_P50_MS,
            floor=f50,
            note=f"n={len(api_ms)} after {WARMUP} warm-up, sequential over one keep-alive connection, "
            f"pause and resume alternating over {AGENTS} agents, each a real change with a fresh Idempotency-Key; "
            f"server CPU {server_cpu * 1000 / len(api_ms):.2f} ms per request; "
            f"floor: n={len(floor_ms)}, redis-py + psycopg: SET NX PX, one transaction (claim, SELECT FOR UPDATE, "
            "versioned UPDATE, audit INSERT, stored answer, COMMIT), Lua release, PUBLISH",
        ),
        Row(
            "control pause/resume p99",
            "ms",
            p99,
            target=TARGET_P99_MS,
            floor=f99,
            note=f"p90 {common.percentile(api_ms, 90):.2f} ms, max {max(api_ms):.2f} ms; "
            f"floor p90 {common.percentile(floor_ms, 90):.2f} ms, max {max(floor_ms):.2f} ms "
            "(measured before without Django: 1.5 ms p50, 2.3 ms p99)",
        ),
        Row(
            "control replay of a finished key p50",
            "ms",
            common.percentile(replay_ms, 50),
            floor=common.percentile(replay_floor_ms, 50),
            note=f"n={len(replay_ms)}, the same key and body again: the stored answer, Idempotent-Replayed, "
            f"no new audit row; p99 {common.percentile(replay_ms, 99):.2f} ms; "
            f"server CPU {replay_cpu * 1000 / len(replay_ms):.2f} ms per request; "
            f"floor: the one SELECT of the stored answer by its key, n={len(replay_floor_ms)}",
        ),
        Row(
            "GET /healthz p50 (context)",
            "ms",
            common.percentile(healthz_ms, 50),
            note=f"the ASGI + middleware path without a database or Redis, on the same connection; "
            f"n={len(healthz_ms)}, p99 {common.percentile(healthz_ms, 99):.2f} ms; "
            f"server CPU {healthz_cpu * 1000 / len(healthz_ms):.2f} ms per request",
        ),
        busy,
    ]


# --- what the database holds afterwards -----------------------------------------------------


def _audit_rows(tenant_id: int) -> int:
    with _pg() as conn:
        row = conn.execute(
            "SELECT count(*) FROM audit_auditentry WHERE tenant_id = %s AND outcome = 'success'", (tenant_id,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def _check(
    seeded: Seeded,
    api: ApiControl,
    floor: FloorControl,
    audit_before: int,
    audit_after: int,
    api_done: int,
    floor_done: int,
) -> None:
    """Every request and floor operation left its change, its audit row and its stored answer."""
    assert audit_after - audit_before == api_done + floor_done, (
        f"{audit_after - audit_before} audit rows in the timed loop, {api_done + floor_done} operations"
    )
    with _pg() as conn:
        versions = {
            str(agent_id): int(version)
            for agent_id, version in conn.execute(
                "SELECT id, version FROM fleet_agent WHERE tenant_id = %s", (seeded.tenant_id,)
            ).fetchall()
        }
        answered = conn.execute(
            "SELECT count(*) FILTER (WHERE key LIKE 'api-%%'), count(*) FILTER (WHERE key LIKE 'floor-%%') "
            "FROM control_idempotencyrecord WHERE tenant_id = %s AND caller = %s AND status_code = 200",
            (seeded.tenant_id, seeded.caller),
        ).fetchone()
    wrong = {a: (versions.get(a), v) for a, v in {**api.versions, **floor.versions}.items() if versions.get(a) != v}
    assert not wrong, f"agent versions (stored, expected): {dict(list(wrong.items())[:5])}"
    assert answered == (WARMUP + api_done, WARMUP + floor_done), f"stored answers (api, floor): {answered}"
