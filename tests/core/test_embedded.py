"""The embedded default, end to end: a console process with no PostgreSQL and no Redis
(SQLite, local-memory cache, in-process periodic tasks) takes an agent's reports."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def embedded_console(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    db = tmp_path / "console.sqlite3"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("L10_", "DJANGO_"))}
    env.update(
        {
            "L10_SQLITE_PATH": str(db),
            "L10_SECRET_KEY": "embedded-test-key",
            "L10_AUDIT_KEYS": "e1:embedded-test-audit-key-0123456789abcdef",
            "L10_TLS": "0",
            "L10_AGENT_HEARTBEAT_INTERVAL": "1",
        }
    )
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--no-input", "-v0"], cwd=ROOT, env=env, check=True, timeout=120)
    tokens = tmp_path / "tokens.txt"
    subprocess.run(
        [*manage, "seed_demo", "--token-file", str(tokens)],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
    )
    token = next(line.split()[1] for line in tokens.read_text().splitlines() if line.startswith("acme "))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "l10console.asgi:application", "--port", str(port), "--lifespan", "on"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, timeout=30, what="the embedded console to answer")
        yield url, token, db
    finally:
        server.terminate()
        server.wait(timeout=15)


def test_the_embedded_default_takes_reports_and_marks_silence(embedded_console):
    url, token, db = embedded_console
    api = httpx.Client(base_url=f"{url}/api/v1/ingest", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert api.post("/register", json={"external_id": "crawler-7", "labels": {"team": "search"}}).status_code == 201
    beat = api.post("/agents/crawler-7/heartbeat", json={"state": "running", "metrics": {"cpu_percent": 40.0}})
    assert beat.status_code == 200
    assert beat.json()["heartbeat_interval"] == 1
    minute = datetime.now(UTC).replace(second=0, microsecond=0).isoformat()
    samples = [{"external_id": "crawler-7", "at": minute, "cpu_percent": c, "tokens": 5} for c in (10.0, 30.0)]
    assert api.post("/metrics", json={"samples": samples}).json() == {"accepted": 2, "duplicates": 0}
    usage = [{"external_id": "crawler-7", "model": "gpt-4o", "input_tokens": 10, "at": minute}]
    assert api.post("/usage", json={"records": usage}).status_code == 200

    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT samples, cpu_max, tokens FROM fleet_metricminute").fetchall()
        assert sum(r[0] for r in rows) == 3  # the heartbeat's sample and the two in the batch
        assert max(r[1] for r in rows) == 40.0
        assert conn.execute("SELECT COUNT(*) FROM costs_usagerecord").fetchone() == (1,)

    # Silent for three 1-second intervals: the in-process timer marks it unresponsive.
    def marked() -> bool:
        with sqlite3.connect(db) as conn:
            row = conn.execute("SELECT observed_state FROM fleet_agent WHERE external_id = 'crawler-7'").fetchone()
        return bool(row and row[0] == "unresponsive")

    wait_for(marked, timeout=15, interval=0.2, what="the embedded timer to mark the agent unresponsive")
    assert httpx.get(f"{url}/login/", timeout=5).status_code == 200
