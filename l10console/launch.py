"""``make run``: migrate, create the demo tenants, serve the console and run a simulated
fleet against it. Ctrl-C (or SIGTERM) stops both cleanly.

    python -m l10console.launch [--agents 12] [--tenants 2] [--no-fleet]

It serves on ``L10_HOST:L10_PORT`` with whatever backends the ``L10_*`` variables select:
the embedded default when none are set, PostgreSQL and Redis when they are.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
TOKEN_FILE = ROOT / "var" / "demo-tokens.txt"
# Agent and browser frames are small JSON: per-message compression would save nothing on
# the wire and costs a zlib context (about 100 KB) per open socket.
UVICORN = [sys.executable, "-m", "uvicorn", "l10console.asgi:application", "--ws-per-message-deflate", "false"]
CELERY = [sys.executable, "-m", "celery", "-A", "l10console", "worker", "-l", "warning"]
# One worker per queue, as in production (docs/operations.md, "Background work"): control's
# batches and short periodic checks never wait behind rollups and purges. Beat runs once,
# beside the control worker. The embedded default runs every task in-process instead.
CELERY_WORKERS = {
    "control": [*CELERY, "-Q", "control", "-n", "control@%h", "--concurrency", "2", "--beat"],
    "background": [*CELERY, "-Q", "background", "-n", "background@%h", "--concurrency", "1"],
}


def _manage(*args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, check=True)


def _ensure_postgres_database() -> None:
    """Create the configured PostgreSQL database if it does not exist yet (development)."""
    from core.config import L10Settings

    config = L10Settings()
    if not config.uses_postgres:
        return
    import psycopg
    from psycopg import sql

    admin_url = config.postgres_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [config.postgres_db]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(config.postgres_db)))
            print(f"Created the PostgreSQL database {config.postgres_db!r}.", flush=True)


def _wait_until_up(url: str, server: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the console exited with code {server.returncode} during start-up")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:  # noqa: S310 - our own URL
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the console did not answer at {url} within {timeout:.0f} s")


def _stop(process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=12, help="simulated agents per tenant")
    parser.add_argument("--tenants", type=int, default=None, help="tenants with a simulated fleet (default: all)")
    parser.add_argument("--no-fleet", action="store_true", help="serve the console only")
    args = parser.parse_args(argv)

    host = os.environ.get("L10_HOST", "0.0.0.0")  # noqa: S104 - the documented default
    port = os.environ.get("L10_PORT", "8010")
    _ensure_postgres_database()
    _manage("migrate", "--no-input", "-v", "0")
    _manage("seed_demo", "--token-file", str(TOKEN_FILE))
    _manage("import_prices", "-v", "0")  # the platform's price list: the fleet's usage has a cost (docs/costs.md)

    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    local = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [*UVICORN, "--host", host, "--port", port, "--lifespan", "on", "--log-level", "warning"],
        cwd=ROOT,
    )
    fleet: subprocess.Popen[bytes] | None = None
    workers: dict[str, subprocess.Popen[bytes]] = {}
    try:
        if os.environ.get("L10_REDIS_HOST"):
            # Production backends: periodic and background tasks run in Celery workers, one per queue.
            workers = {queue: subprocess.Popen(command, cwd=ROOT) for queue, command in CELERY_WORKERS.items()}
        _wait_until_up(local, server)
        print(f"\nThe console is up: {local}/  (Ctrl-C stops the console and the fleet)\n", flush=True)
        if not args.no_fleet:
            command = [sys.executable, "manage.py", "simulate_fleet", "--url", local, "--agents", str(args.agents)]
            command += ["--token-file", str(TOKEN_FILE)]
            if args.tenants:
                command += ["--tenants", str(args.tenants)]
            fleet = subprocess.Popen(command, cwd=ROOT)
        while not stopping:
            if server.poll() is not None:
                print(f"the console exited with code {server.returncode}", file=sys.stderr)
                return 1
            for queue, worker in workers.items():
                if worker.poll() is not None:
                    print(f"the Celery worker of {queue} exited with code {worker.returncode}", file=sys.stderr)
                    return 1
            if fleet is not None and fleet.poll() is not None:
                print(f"the simulated fleet exited with code {fleet.returncode}", file=sys.stderr)
                return 1
            time.sleep(0.2)
        print("\nStopping…", flush=True)
        return 0
    finally:
        _stop(fleet, timeout=20)
        _stop(server, timeout=15)
        for worker in workers.values():
            _stop(worker, timeout=15)


if __name__ == "__main__":
    sys.exit(main())
