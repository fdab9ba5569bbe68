"""From a metric crossing a threshold to an open alerts page hearing of the alert, with a
real Celery worker and beat evaluating, beside the Redis floor.

The target: under two evaluation intervals ("for" 0), whatever the moment the metric
crosses within an interval (docs/alerts.md, "Evaluation").

- The console: one uvicorn process (core 1) and one Celery worker with beat on both queues
  (``L10_ALERT_EVAL_INTERVAL`` = ``INTERVAL``), on PostgreSQL and Redis.
- A rule "CPU max over 5 min > 90", no "for"; ``ROUNDS`` agents, all quiet at first.
- The page: this process opens the live socket of the alerts page
  (``/ws/live/<slug>/?view=alerts``) with a member's session, as the page does; the page
  shows a new alert when its badge frame (``{"type": "badge", "count": n}``) comes.
- Each round (after a first one that waits for the worker to start): one more agent reports
  CPU 99 % through the ingest API (a heartbeat); the
  clock starts when the console has answered it (the sample is stored) and stops when a
  badge frame counts the new alert. Rounds start at spread moments of an interval, so the
  figure covers the whole of the wait for the next evaluation.
- Floor: a plain ``PUBLISH`` to one ``redis.asyncio`` subscriber in this process
  (``bench_fanout.redis_floor``), what moving a message costs the data store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from bench import bench_fanout, bench_live_overview, common
from bench.common import Row

ROUNDS = common.sized(12, 3)
INTERVAL = 2  # seconds between evaluations in this run (the default is 15)
TARGET_INTERVALS = 2.0
SLUG = "latency"


@contextlib.contextmanager
def worker(extra_env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """A Celery worker with beat on both queues, pinned beside the server (core 1)."""
    with tempfile.TemporaryDirectory(prefix="l10bench-beat-") as tmp:
        command = [
            "taskset", "-c", str(common.SERVER_CORE), str(common.PYTHON), "-m", "celery", "-A", "l10console", "worker",
            "-l", "warning", "--pool", "solo", "--without-heartbeat", "--without-mingle", "--without-gossip",
            "-Q", "control,background", "--beat", "--schedule", str(Path(tmp) / "beat-schedule"),
        ]  # fmt: skip
        process = subprocess.Popen(
            command, cwd=common.ROOT, env={**common.server_env(), **extra_env}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            yield process
        finally:
            process.terminate()
            try:
                out, _ = process.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                out, _ = process.communicate(timeout=10)
            if process.returncode not in (0, -15) and out:
                print(f"--- worker output ---\n{out[-2000:]}", file=sys.stderr)


async def measure(base_url: str, cookie: str, token: str) -> list[float]:
    """Seconds from each agent's answered hot heartbeat to the badge frame counting it."""
    url = bench_fanout.ws_url(base_url)
    latencies: list[float] = []
    async with connect(
        f"{url}/ws/live/{SLUG}/?view=alerts", additional_headers={"Cookie": cookie}, origin=base_url,  # type: ignore[arg-type]
        compression=None, ping_interval=None, proxy=None, open_timeout=30,
    ) as ws, httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {token}"}) as http:  # fmt: skip
        counted = 0
        for n in range(ROUNDS + 1):  # the first round waits for the worker and beat to start: not counted
            # Spread the rounds over an interval: the wait for the next evaluation varies.
            await asyncio.sleep(INTERVAL * (n % 4) / 4)
            response = await http.post(
                f"/api/v1/ingest/agents/hot-{n}/heartbeat", json={"state": "running", "metrics": {"cpu_percent": 99.0}}
            )
            if response.status_code != 200:
                raise AssertionError(f"the heartbeat was refused: {response.status_code} {response.text[:200]}")
            started = time.perf_counter()
            deadline = started + (60 if n == 0 else 10 * INTERVAL)
            while counted < n + 1:
                left = deadline - time.perf_counter()
                if left <= 0:
                    raise AssertionError(f"no badge counted agent hot-{n} in time")
                frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=left))
                if frame.get("type") == "ping":
                    await ws.send('{"type":"pong"}')
                elif frame.get("type") == "badge":
                    counted = int(frame["count"])
            if n:
                latencies.append(time.perf_counter() - started)
    return latencies


def _setup(tenant_id: int) -> str:
    from django.utils import timezone

    from alerts.models import AlertRule

    now = timezone.now()
    AlertRule.objects.filter(tenant_id=tenant_id).delete()
    AlertRule.objects.create(
        # Five minutes: an agent's one hot minute stays in the window for the whole run. With
        # one minute, a run that crossed a minute's end saw the first agents' alerts resolve
        # (their minute left the window) and the badge never reached the count it waited for.
        tenant_id=tenant_id, name="CPU hot", metric="cpu_percent", aggregation="max", threshold=90, window_seconds=300,
        created_at=now, updated_at=now, severity="critical",
    )  # fmt: skip
    return bench_live_overview.session_cookie(tenant_id)


def run() -> list[Row]:
    pinning = common.pin_client()
    common.flush_redis()
    common.recreate_database()
    seed = common.seed_tenant(SLUG, [f"hot-{n}" for n in range(ROUNDS + 1)])
    bench_fanout.django_setup()
    bench_fanout.drop_django_connections()  # the database was made again under this process's connection
    cookie = _setup(seed.tenant_id)
    bench_fanout.drop_django_connections()
    env = {"L10_ALERT_EVAL_INTERVAL": str(INTERVAL)}
    with common.server(env) as srv, worker(env):
        latencies = bench_fanout.run_loop(measure(srv.base_url, cookie, seed.token))
    floor = bench_fanout.run_loop(bench_fanout.redis_floor(common.sized(200, 20)))
    ms = [v * 1000 for v in latencies]
    return [
        Row(
            "alert: metric crossing → the open page's badge, p99",
            "ms",
            bench_fanout.pct(ms, 99),
            target=TARGET_INTERVALS * INTERVAL * 1000,
            floor=bench_fanout.pct(floor, 99),
            note=f"n={len(ms)} agents crossing at spread moments of a {INTERVAL} s evaluation interval (target: two "
            f"intervals); p50 {bench_fanout.pct(ms, 50):.0f} ms, max {max(ms):.0f} ms; a real Celery worker with beat; "
            f"the page is the alerts page's live socket; floor: plain PUBLISH → one redis.asyncio subscriber, p99; "
            f"{pinning}",
        )
    ]
