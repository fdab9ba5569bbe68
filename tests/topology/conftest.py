"""The production topology of the Procfile, started with honcho on the test database.

Each web process runs under a ``honcho start`` of its own, and the workers and beat under
another: honcho stops every process it runs when one of them exits (as `make prod` does
on one machine), and the tests kill one web process and watch the rest carry on, as they
do under systemd (docs/operations.md, "Deployment"). The commands are the Procfile's,
run by honcho as `make prod` runs them.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from django.core.cache import cache

from tests import services
from tests.conftest import ROOT, free_port, process_env, wait_for

PROCFILE = ROOT / "Procfile"
WORKERS = ("control", "background", "beat")
READY = {
    "control": re.compile(r"\| .*\bcontrol@\S+ ready\."),
    "background": re.compile(r"\| .*\bbackground@\S+ ready\."),
    "beat": re.compile(r"\| .*beat: Starting\.\.\."),
}
# Beat's sweep of silent agents (fleet.tasks.mark_unresponsive) runs every heartbeat
# interval: every 2 s here, marking agents silent for 6 s.
HEARTBEAT_INTERVAL = 2


def procfile() -> dict[str, str]:
    """The Procfile's processes by name, as honcho reads it."""
    from honcho.environ import parse_procfile

    return dict(parse_procfile(PROCFILE.read_text()).processes)


class Honcho:
    """One ``honcho start`` of some of the Procfile's processes, and what it printed."""

    def __init__(self, arguments: list[str], env: dict[str, str]) -> None:
        command = [sys.executable, "-m", "honcho", "--env", "/dev/null", "--no-colour"]
        command += ["--procfile", str(PROCFILE), "--app-root", str(ROOT), "start", *arguments]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def said(self, pattern: re.Pattern[str]) -> bool:
        return any(pattern.search(line) for line in list(self.lines))

    def pids(self) -> list[int]:
        """The processes honcho started (each the Procfile command itself: it `exec`s)."""
        found = (re.search(r"\| \S+ started \(pid=(\d+)\)", line) for line in list(self.lines))
        return [int(m.group(1)) for m in found if m]

    def output(self, last: int = 80) -> str:
        return "".join(self.lines[-last:])

    def stop(self) -> None:
        """As Ctrl-C on `make prod`: honcho sends SIGTERM to each process, SIGKILL after 5 s."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            for pid in self.pids():  # each in a session of its own: never left behind
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)


@dataclass
class Web:
    port: int
    honcho: Honcho

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


class Topology:
    """Two web processes, a worker per queue and beat: the Procfile, run by honcho."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.webs: list[Web] = []
        self.workers: Honcho | None = None

    def start(self) -> None:
        self.workers = Honcho(list(WORKERS), self.env)
        ports: list[int] = []
        while len(ports) < 2:
            if (port := free_port()) not in ports:
                ports.append(port)
        self.webs = [self._web(port) for port in ports]
        for web in self.webs:
            self._wait_ready(web)
        workers = self.workers
        for name in WORKERS:
            self._wait(lambda n=name: workers.said(READY[n]), f"{name} to be ready", workers)

    def _web(self, port: int) -> Web:
        # `make prod` runs `honcho start --concurrency web=2 --port P`: web.1 on P, web.2 on P + 1.
        return Web(port, Honcho(["--port", str(port), "web"], self.env))

    def _wait(self, condition: object, what: str, honcho: Honcho) -> None:
        def met() -> bool:
            if honcho.process.poll() is not None:
                raise AssertionError(f"honcho exited while waiting for {what}:\n{honcho.output()}")
            return bool(condition())  # type: ignore[operator]

        try:
            wait_for(met, timeout=60, interval=0.1, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{honcho.output()}") from None

    def _wait_ready(self, web: Web) -> None:
        self._wait(web.ready, f"the web process on {web.port} to be ready", web.honcho)

    def kill(self, web: Web) -> None:
        """SIGKILL the web process: no shutdown, no goodbye to its clients."""
        (pid,) = web.honcho.pids()
        os.killpg(pid, signal.SIGKILL)
        web.honcho.process.wait(timeout=15)  # its honcho ends with it

    def restart(self, web: Web) -> Web:
        web.honcho.stop()
        again = self._web(web.port)
        self.webs[self.webs.index(web)] = again
        self._wait_ready(again)
        return again

    def stop(self) -> None:
        for web in self.webs:
            web.honcho.stop()
        if self.workers is not None:
            self.workers.stop()


@pytest.fixture(scope="module")
def topology(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    if not (services.HAS_POSTGRES and services.HAS_REDIS):
        pytest.skip("SKIPPED LOUDLY: the production topology needs PostgreSQL and Redis")
    env = process_env(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # as `make prod` sets it
        PYTHONUNBUFFERED="1",
        L10_PROD_HOST="127.0.0.1",
        L10_PROD_BEAT_SCHEDULE=str(tmp_path_factory.mktemp("beat") / "celerybeat-schedule"),
        L10_AGENT_HEARTBEAT_INTERVAL=str(HEARTBEAT_INTERVAL),
    )
    env.pop("PORT", None)
    running = Topology(env)
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    """The cache's own keys only, not the suite's `flushdb`: the same Redis database holds
    the broker's queues and bindings, which the running workers and beat keep using."""
    yield
    with contextlib.suppress(Exception):
        cache.delete_pattern("*")  # type: ignore[attr-defined]
