"""Approvals: from a person's click to the agent's call returning, with ``AGENTS`` agents
connected, and the inbox with ``PENDING`` pending requests (docs/approvals.md;
docs/performance.md, "Approvals").

- Data (a PostgreSQL and a Redis database of its own): one tenant through the app's own
  code, with an operator (a password for the pages, a personal token for the API) and a
  tenant API token; ``AGENTS`` agents by one ``INSERT … SELECT`` (``common.AGENTS_SQL``),
  and one more, the asker, registered by the SDK.
- The click: the asker (``l10_agent.Agent`` in this process, its socket open, beside
  ``AGENTS`` agents' sockets this process holds open to the server on core 1, each reading
  its frames) calls ``agent.request_approval(...)`` in a thread; once the request is stored
  (read with psycopg), the operator approves it with ``POST
  /api/v1/approvals/{id}/approve`` (httpx, one keep-alive connection): from just before the
  POST to the moment the asker's call returns, ``SAMPLES`` times; each decision must be the
  approval sent, and no other agent's socket may hear it. Target: p99 under 100 ms.
  Floor: the hub's fan-out floor, a Redis ``PUBLISH`` heard by a subscriber in this
  process (``bench_fanout.redis_floor``), and, for context, the POST's own time.
- The inbox: ``PENDING`` pending requests of the connected agents (each agent one, details
  a small object, every tenth a before/after pair), stored through ``INSERT … SELECT``;
  ``GET /t/<slug>/approvals/`` as the signed-in operator, ``SAMPLES`` times (it shows
  the oldest 100 pending and says how many more). Target: p95 under 100 ms. Floor: the inbox's own query by hand (the pending requests, oldest
  first, with their agents) with psycopg.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from bench import bench_fanout, common
from bench.common import Row

DB_NAME = common.db_name("l10bench_approvals")
REDIS_DB = common.redis_db(12)
AGENTS = common.sized(1000, 20)
PENDING = common.sized(1000, 20)
SAMPLES = common.sized(200, 10)
WARMUP = common.sized(10, 2)
CLICK_TARGET_MS = 100.0
INBOX_TARGET_MS = 100.0
SLUG = "bench-approvals"
USERNAME = "bench-operator"
PASSWORD = secrets.token_hex(16)  # a fresh account each run
INBOX_SHOWN = 100  # approvals.views.PENDING_SHOWN
DEADLINE = 10.0  # seconds: a call not returned by then is a failure, not a sample

SEED_CODE = """
import json, os
from django.contrib.auth import get_user_model
from tenancy import services
from tenancy.models import Membership, Role, Tenant
spec = json.loads(os.environ["BENCH_SPEC"])
tenant = Tenant.objects.create(slug=spec["slug"], name="Bench approvals")
user = get_user_model().objects.create_user(spec["username"], password=spec["password"])
Membership.objects.create(user=user, tenant=tenant, role=Role.OPERATOR)
_, personal = services.personal_token_create(user=user, name="bench")
_, ingest = services.token_create(tenant=tenant, name="bench", created_by=None)
print("L10BENCH " + json.dumps({"tenant_id": tenant.pk, "personal": personal, "ingest": ingest}))
"""

# Each connected agent one pending request, oldest first by its number.
PENDING_SQL = """
INSERT INTO approvals_approvalrequest (id, tenant_id, agent_id, key, action, summary, details, state, on_timeout,
    needs_role, needs_approvers, created_at, expires_at, decided_by_label, comment)
SELECT md5('approval:' || k)::uuid, %(tenant)s, md5('agent:' || %(tenant)s || ':' || k)::uuid, 'bench-' || k,
    (ARRAY['email.send', 'deploy.prod', 'db.delete', 'refund.issue'])[1 + k %% 4],
    'Step ' || k || ': mail ' || (k %% 90 + 10) || ' customers about their renewal',
    CASE WHEN k %% 10 = 0
        THEN jsonb_build_object('before', 'plan: basic\nseats: ' || k, 'after', 'plan: team\nseats: ' || (k + 5))
        ELSE jsonb_build_object('to', k %% 90 + 10, 'template', 'renewal-' || k %% 7) END,
    'pending', 'reject', 'operator', 1, now() - interval '1 hour' + k * interval '1 second',
    now() + interval '6 hours', '', ''
FROM generate_series(1, %(n)s) AS k
"""
FLOOR_INBOX = """
SELECT r.id, r.action, r.summary, r.details, r.created_at, r.expires_at, r.needs_role, r.needs_approvers,
    a.id, a.external_id, a.name
FROM approvals_approvalrequest r JOIN fleet_agent a ON a.id = r.agent_id
WHERE r.tenant_id = %s AND r.state = 'pending' ORDER BY r.created_at, r.id LIMIT 1000
"""


@dataclass(frozen=True)
class Seeded:
    tenant_id: int
    personal: str
    ingest: str


def seed() -> Seeded:
    spec = {"slug": SLUG, "username": USERNAME, "password": PASSWORD}
    out = common.manage("shell", "--no-imports", "-c", SEED_CODE, extra_env={"BENCH_SPEC": json.dumps(spec)})
    line = next((x for x in out.splitlines() if x.startswith("L10BENCH ")), None)
    if line is None:
        raise RuntimeError(f"seeding printed no tokens:\n{out}")
    data = json.loads(line.removeprefix("L10BENCH "))
    seeded = Seeded(int(data["tenant_id"]), data["personal"], data["ingest"])
    with common.pg_connect(DB_NAME, autocommit=True) as conn:
        conn.execute(common.AGENTS_SQL, {"tenant": seeded.tenant_id, "n": AGENTS})
        conn.execute("VACUUM ANALYZE fleet_agent")
    return seeded


@dataclass
class Fleet:
    """``AGENTS`` agents' sockets, and every approval frame any of them heard."""

    sockets: list[ClientConnection] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)
    heard: list[str] = field(default_factory=list)
    dropped: int = 0

    async def open(self, base: str, token: str) -> None:
        gate = asyncio.Semaphore(50)

        async def one(k: int) -> None:
            async with gate:
                ws = await connect(
                    f"{base}/ws/agent?external_id=worker-{k:05d}", additional_headers={"Authorization": f"Bearer {token}"},
                    compression=None, ping_interval=None, proxy=None, open_timeout=30,
                )  # fmt: skip
                first = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
                if first.get("type") != "control":
                    raise RuntimeError(f"worker-{k:05d}: {first}")
                self.sockets.append(ws)
                self.readers.append(asyncio.get_running_loop().create_task(self.read(ws)))

        await asyncio.gather(*(one(k) for k in range(1, AGENTS + 1)))

    async def read(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                if isinstance(message, str) and '"type": "approval"' in message:
                    self.heard.append(message)
        except Exception:
            self.dropped += 1

    async def close(self) -> None:
        for ws in self.sockets:
            with contextlib.suppress(Exception):
                await ws.close()
        for task in self.readers:
            task.cancel()


def _pending_id(key: str) -> str:
    """The id of the asker's request with ``key`` once it is stored (waited on, with a deadline)."""
    deadline = time.monotonic() + DEADLINE
    with common.pg_connect(DB_NAME, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT id::text FROM approvals_approvalrequest WHERE key = %s", [key]).fetchone()
            if row:
                return str(row[0])
            time.sleep(0.002)
    raise AssertionError(f"the request {key} was not stored within {DEADLINE} s")


def clicks(base: str, seeded: Seeded) -> dict[str, list[float]]:
    """The asker asks, the operator approves: (click to return, the POST alone) in ms."""
    from l10_agent import Agent

    agent = Agent(base, seeded.ingest, "bench-asker", name="Bench asker", heartbeat_interval=60)
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {seeded.personal}"}, timeout=30)
    took: list[float] = []
    posts: list[float] = []
    try:
        if not agent.wait_for_state("running", timeout=30):
            raise AssertionError("the asker did not start")
        for n in range(-WARMUP, SAMPLES):
            key = f"click-{n + WARMUP}"
            returned: dict[str, Any] = {}

            def ask(key: str = key, returned: dict[str, Any] = returned) -> None:
                decision = agent.request_approval("deploy.prod", "Deploy build 42", key=key, timeout=600)
                returned["at"] = time.perf_counter()
                returned["decision"] = decision

            thread = threading.Thread(target=ask, daemon=True)
            thread.start()
            approval_id = _pending_id(key)
            started = time.perf_counter()
            answer = api.post(f"/api/v1/approvals/{approval_id}/approve", json={"comment": "ok"})
            posted = time.perf_counter()
            if answer.status_code != 200:
                raise AssertionError(f"approve answered {answer.status_code}: {answer.text[:300]}")
            thread.join(timeout=DEADLINE)
            decision = returned.get("decision")
            if decision is None or not decision.approved or decision.decided_by != USERNAME:
                raise AssertionError(f"the asker's call returned {decision!r}")
            if n >= 0:
                took.append((returned["at"] - started) * 1000)
                posts.append((posted - started) * 1000)
    finally:
        api.close()
        agent.close(timeout=10)
    return {"click": took, "post": posts}


def inbox(base: str, seeded: Seeded) -> dict[str, list[float]]:
    """The inbox page as the operator, and its query by hand (ms)."""
    with common.pg_connect(DB_NAME, autocommit=True) as conn:
        conn.execute(PENDING_SQL, {"tenant": seeded.tenant_id, "n": PENDING})
        conn.execute("VACUUM ANALYZE approvals_approvalrequest")
        client = httpx.Client(base_url=base, timeout=30, follow_redirects=False)
        form = client.get("/login/")
        token = client.cookies.get("csrftoken")
        done = client.post(
            "/login/", data={"username": USERNAME, "password": PASSWORD, "csrfmiddlewaretoken": token, "next": ""}
        )
        if form.status_code != 200 or done.status_code != 302:
            raise AssertionError(f"sign-in answered {form.status_code}, {done.status_code}")
        pages: list[float] = []
        floors: list[float] = []
        try:
            for n in range(-WARMUP, SAMPLES):
                started = time.perf_counter()
                page = client.get(f"/t/{SLUG}/approvals/")
                took = (time.perf_counter() - started) * 1000
                started = time.perf_counter()
                rows = conn.execute(FLOOR_INBOX, [seeded.tenant_id]).fetchall()
                floor = (time.perf_counter() - started) * 1000
                if page.status_code != 200 or "Step 1:" not in page.text or len(rows) != PENDING:
                    raise AssertionError(f"the inbox answered {page.status_code} ({len(rows)} pending by hand)")
                if n >= 0:
                    pages.append(took)
                    floors.append(floor)
        finally:
            client.close()
    return {"page": pages, "floor": floors}


async def _measure(srv: common.Server, seeded: Seeded) -> tuple[dict[str, list[float]], dict[str, list[float]], Fleet]:
    fleet = Fleet()
    await fleet.open(bench_fanout.ws_url(srv.base_url), seeded.ingest)
    try:
        clicked = await asyncio.to_thread(clicks, srv.base_url, seeded)
        listed = await asyncio.to_thread(inbox, srv.base_url, seeded)
    finally:
        await fleet.close()
    return clicked, listed, fleet


def run() -> list[Row]:
    with common.own_stores(DB_NAME, REDIS_DB):
        pinning = common.pin_client()
        common.flush_redis()
        common.recreate_database()
        seeded = seed()
        with common.server() as srv:
            common.progress(f"{AGENTS:,} agent sockets open, the asker asking {SAMPLES} times")
            clicked, listed, fleet = bench_fanout.run_loop(_measure(srv, seeded))
            floor = bench_fanout.run_loop(bench_fanout.redis_floor(SAMPLES))
    if fleet.heard or fleet.dropped:
        raise AssertionError(f"other agents heard {len(fleet.heard)} decisions; {fleet.dropped} sockets dropped")
    p = common.percentile
    click, post = clicked["click"], clicked["post"]
    page, by_hand = listed["page"], listed["floor"]
    return [
        Row(
            f"approvals: click to the agent's call returning, {AGENTS:,} agents connected, p99",
            "ms",
            p(click, 99),
            target=CLICK_TARGET_MS,
            floor=p(floor, 99),
            note=f"p50 {p(click, 50):.2f} ms over {len(click)} approvals (POST /api/v1/approvals/{{id}}/approve, "
            f"then the decision over the asker's socket to l10_agent's request_approval returning in its thread); "
            f"the POST alone p50 {p(post, 50):.2f} ms, p99 {p(post, 99):.2f} ms; floor: a Redis PUBLISH heard by a "
            f"subscriber, p50 {p(floor, 50):.3f} ms; none of the {AGENTS:,} other agents' sockets heard a decision; "
            f"{pinning}",
        ),
        Row(
            f"approvals: the inbox with {PENDING:,} pending requests, p95",
            "ms",
            p(page, 95),
            target=INBOX_TARGET_MS,
            floor=p(by_hand, 95),
            note=f"p50 {p(page, 50):.2f} ms over {len(page)} GETs of /t/<slug>/approvals/ signed in (the page shows "
            f"the oldest {INBOX_SHOWN} pending with their forms and details and says how many more, and the first "
            f"page of the history); floor: the pending requests with their agents by hand (psycopg), all "
            f"{PENDING:,} of them, p50 {p(by_hand, 50):.2f} ms",
        ),
    ]
