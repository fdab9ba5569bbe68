"""CI smoke of the embedded default, the way `make run` starts it.

Starts the console and a simulated fleet with no PostgreSQL and no Redis, waits for the
fleet to report in, pauses one agent through the service layer, waits for that SDK
agent to confirm, then stops everything with Ctrl-C. Bounded: about a minute.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait(what: str, condition, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            print(f"  ok: {what}", flush=True)
            return
        time.sleep(0.5)
    raise SystemExit(f"smoke failed: {what} did not happen within {timeout:.0f} s")


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="l10-smoke-"))
    for name in [k for k in os.environ if k.startswith("L10_")]:
        del os.environ[name]
    os.environ.update(
        {
            "L10_DEBUG": "1",
            "L10_HOST": "127.0.0.1",
            "L10_PORT": str(free_port()),
            "L10_SQLITE_PATH": str(workdir / "console.sqlite3"),
            "L10_AGENT_HEARTBEAT_INTERVAL": "2",
            "DJANGO_SETTINGS_MODULE": "l10console.settings",
        }
    )
    print(f"== embedded default on port {os.environ['L10_PORT']}, database {workdir}", flush=True)
    launcher = subprocess.Popen([sys.executable, "-m", "l10console.launch", "--agents", "3"], cwd=ROOT)
    try:
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.db.utils import OperationalError

        from fleet import services
        from fleet.models import Agent, DesiredState, ObservedState

        def running() -> int:
            try:
                return Agent.objects.filter(observed_state=ObservedState.RUNNING).count()
            except OperationalError:  # not migrated yet
                return 0

        wait("the simulated fleet reports in (6 agents running)", lambda: running() >= 6, timeout=60)
        agent = Agent.objects.filter(observed_state=ObservedState.RUNNING).order_by("external_id").first()
        if agent is None:
            raise SystemExit("smoke failed: the running agents vanished")
        services.agent_desired_state_set(agent_id=agent.pk, state=DesiredState.PAUSED, actor=None)
        print(f"  paused {agent.tenant.slug}/{agent.external_id} through the service layer", flush=True)
        wait(
            f"{agent.external_id} confirms the pause",
            lambda: Agent.objects.get(pk=agent.pk).observed_state == ObservedState.PAUSED,
            timeout=30,
        )
    finally:
        if launcher.poll() is None:
            launcher.send_signal(signal.SIGINT)
        try:
            code = launcher.wait(timeout=40)
        except subprocess.TimeoutExpired:
            launcher.kill()
            raise SystemExit("smoke failed: make run did not stop within 40 s of Ctrl-C") from None
    if code != 0:
        raise SystemExit(f"smoke failed: the launcher exited with {code}")
    print("== embedded smoke passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
