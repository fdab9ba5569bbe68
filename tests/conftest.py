"""The fixed cast and the real-service harness.

Cast: tenant A ("acme") with an admin, an operator and a viewer; tenant B ("globex")
with an operator (the outsider to A); a staff user who is admin of A; a superuser.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import hypothesis
import pytest
import uvicorn
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client

from core import breakers
from fleet.models import Agent
from tenancy import services as tenancy_services
from tenancy.models import Role, Tenant
from tests import services
from tests.factories import AgentFactory, MembershipFactory, TenantFactory, UserFactory

# Every property-based test (Hypothesis, Schemathesis) runs the same examples on every run,
# so CI is repeatable; no example database; no deadline (a database round trip varies);
# fixtures shared by examples are fine here (each example checks what it stored itself).
# A test names only its number of examples: ``@settings(max_examples=N)``.
hypothesis.settings.register_profile(
    "console",
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture, hypothesis.HealthCheck.too_slow],
)
hypothesis.settings.load_profile("console")

ROOT = Path(__file__).resolve().parent.parent


# --- services -------------------------------------------------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for name, reason in services.MISSING.items():
            if reason and item.get_closest_marker(name):
                item.add_marker(pytest.mark.skip(reason=f"SKIPPED LOUDLY: {reason}; this test needs it"))


def pytest_report_header(config: pytest.Config) -> list[str]:
    pg = "PostgreSQL" if services.HAS_POSTGRES else f"SQLite ({services.MISSING['postgres']})"
    rd = "Redis" if services.HAS_REDIS else f"local memory ({services.MISSING['redis']})"
    return [f"l10 services: database {pg}; cache {rd}; CI={services.CI}"]


@pytest.fixture(scope="session", autouse=True)
def _fresh_test_redis() -> None:
    if services.HAS_REDIS:
        import redis

        redis.Redis(host=services.REDIS_HOST, port=services.REDIS_PORT, db=services.REDIS_DB).flushdb()


@pytest.fixture(autouse=True)
def _breakers_as_configured() -> Iterator[None]:
    """Every test starts and ends with each circuit breaker closed and as configured."""
    saved = {name: (b.fail_max, b.reset_timeout) for name, b in breakers.ALL.items()}
    breakers.reset_all()
    yield
    for name, breaker in breakers.ALL.items():
        breaker.fail_max, breaker.reset_timeout = saved[name]
    breakers.reset_all()


@pytest.fixture
def quick_metrics_breaker() -> Iterator[object]:
    """The metrics breaker lets a call through 1 s after opening (instead of 15 s)."""
    before = breakers.metrics.reset_timeout
    breakers.metrics.reset_timeout = 1
    yield breakers.metrics
    breakers.metrics.reset_timeout = before


@pytest.fixture(autouse=True)
def _clear_cache() -> Iterator[None]:
    yield
    # A test that pointed the cache at a private Redis and killed it leaves nothing to clear.
    with contextlib.suppress(Exception):
        cache.clear()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    condition: Callable[[], object], *, timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> object:
    """Poll ``condition`` until it returns something truthy, or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(interval)


@dataclass
class PrivateRedis:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def restart(self) -> None:
        """A new redis-server on the same port, after ``kill``: empty, as a crashed server
        that saved nothing comes back."""
        assert self.process.poll() is not None, "kill it first"
        self.process = _redis_server(self.port)


def _redis_server(port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server") or "redis-server"
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: services.answers("127.0.0.1", port), timeout=10, what="private redis-server")
    return process


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A redis-server of this test's own on a free port, which the test may kill (and
    start again on the same port)."""
    if shutil.which("redis-server") is None:
        if services.CI:
            pytest.fail("redis-server is not installed")
        pytest.skip("SKIPPED LOUDLY: redis-server is not installed")
    server = PrivateRedis(port=(port := free_port()), process=_redis_server(port))
    yield server
    if server.process.poll() is None:
        server.process.kill()
        server.process.wait(timeout=10)


# --- the cast -------------------------------------------------------------------------


@pytest.fixture
def tenant_a(db: None) -> Tenant:
    return TenantFactory.create(slug="acme", name="Acme")


@pytest.fixture
def tenant_b(db: None) -> Tenant:
    return TenantFactory.create(slug="globex", name="Globex")


def _member(username: str, tenant: Tenant, role: Role) -> User:
    user = UserFactory.create(username=username)
    MembershipFactory.create(user=user, tenant=tenant, role=role)
    return user


@pytest.fixture
def admin_a(tenant_a: Tenant) -> User:
    return _member("alice", tenant_a, Role.ADMIN)


@pytest.fixture
def operator_a(tenant_a: Tenant) -> User:
    return _member("oscar", tenant_a, Role.OPERATOR)


@pytest.fixture
def viewer_a(tenant_a: Tenant) -> User:
    return _member("vera", tenant_a, Role.VIEWER)


@pytest.fixture
def operator_b(tenant_b: Tenant) -> User:
    return _member("bob", tenant_b, Role.OPERATOR)


@pytest.fixture
def staff(tenant_a: Tenant) -> User:
    user = _member("sam", tenant_a, Role.ADMIN)
    user.is_staff = True
    user.save()
    return user


@pytest.fixture
def superuser(db: None) -> User:
    user = UserFactory.create(username="root")
    user.is_staff = user.is_superuser = True
    user.save()
    return user


@pytest.fixture
def agent_a(tenant_a: Tenant) -> Agent:
    return AgentFactory.create(tenant=tenant_a, external_id="worker-1", name="Worker 1")


@pytest.fixture
def agent_b(tenant_b: Tenant) -> Agent:
    return AgentFactory.create(tenant=tenant_b, external_id="worker-1", name="Globex worker")


@pytest.fixture
def token_a(tenant_a: Tenant, admin_a: User) -> str:
    return tenancy_services.token_create(tenant=tenant_a, name="fleet A", created_by=admin_a)[1]


@pytest.fixture
def token_b(tenant_b: Tenant) -> str:
    return tenancy_services.token_create(tenant=tenant_b, name="fleet B", created_by=None)[1]


def client_for(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


# --- a live ASGI server ---------------------------------------------------------------


@dataclass
class LiveServer:
    host: str
    port: int
    server: uvicorn.Server | None = None  # when it runs in this process

    def handling(self) -> int:
        """Requests being handled now: read up to their headers, not yet answered."""
        assert self.server is not None, "only a server in this process can be watched"
        return len(self.server.server_state.tasks)

    def idle(self) -> bool:
        """No connection open and no request being handled (a server in this process)."""
        assert self.server is not None, "only a server in this process can be watched"
        state = self.server.server_state
        return not state.connections and not state.tasks

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"


class UvicornThread:
    """The console's ASGI app served by uvicorn in a thread of the test process, so it
    shares the test database settings. It can be stopped and started again on the same
    port (an outage, from a client's point of view)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        from l10console.asgi import application

        config = uvicorn.Config(
            application, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on", ws="websockets-sansio"
        )
        server = uvicorn.Server(config)
        self.server = server
        self.thread = threading.Thread(target=server.run, name=f"uvicorn-{self.port}", daemon=True)
        self.thread.start()
        wait_for(lambda: server.started, timeout=15, what="uvicorn to start")

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(timeout=15)
            self.server = None


@pytest.fixture
def asgi_server(transactional_db: None) -> Iterator[LiveServer]:
    """The ASGI app (pages and sockets) on a free port, over a committed test database."""
    server = UvicornThread(free_port())
    server.start()
    yield LiveServer("127.0.0.1", server.port, server.server)
    server.stop()


@pytest.fixture
def asgi_server_control(transactional_db: None) -> Iterator[UvicornThread]:
    """Like ``asgi_server``, but the test starts and stops it."""
    server = UvicornThread(free_port())
    yield server
    server.stop()


# --- the console in processes of its own ----------------------------------------------


def process_env(**extra: str) -> dict[str, str]:
    """The environment for a console process (server, worker) on the test database and Redis."""
    from django.conf import settings as django_settings
    from django.db import connection

    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(
        {
            "L10_POSTGRES_DB": connection.settings_dict["NAME"],  # the test database
            "L10_SECRET_KEY": django_settings.SECRET_KEY,
            "DJANGO_SETTINGS_MODULE": "l10console.settings",
            **extra,
        }
    )
    return env


@contextlib.contextmanager
def uvicorn_processes(count: int, **extra_env: str) -> Iterator[list[LiveServer]]:
    """``count`` uvicorn processes serving the console, each with its own hub."""
    if not (services.HAS_POSTGRES and services.HAS_REDIS):
        pytest.skip("SKIPPED LOUDLY: console processes need PostgreSQL and Redis")
    env = process_env(**extra_env)
    started: list[tuple[subprocess.Popen[bytes], LiveServer]] = []
    try:
        for _ in range(count):
            port = free_port()
            command = [sys.executable, "-m", "uvicorn", "l10console.asgi:application", "--port", str(port)]
            command += ["--host", "127.0.0.1", "--log-level", "warning", "--ws-per-message-deflate", "false"]
            process = subprocess.Popen(command, cwd=ROOT, env=env)
            started.append((process, LiveServer("127.0.0.1", port)))
        for process, live in started:
            host, port = live.host, live.port
            wait_for(partial(services.answers, host, port), timeout=30, what="uvicorn to listen")
            assert process.poll() is None
        yield [live for _, live in started]
    finally:
        for process, _ in started:
            process.terminate()
        for process, _ in started:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


# --- a real Celery worker -------------------------------------------------------------


@contextlib.contextmanager
def celery_worker(
    tmp_path: Path,
    *,
    queues: str = "control,background",
    beat: bool = True,
    name: str = "test",
    purge: bool = True,
    **extra_env: str,
) -> Iterator[subprocess.Popen[str]]:
    """``celery worker -Q <queues>`` (with ``--beat``, or not) in its own process, on the
    test database and the test Redis; its output is kept for the failure message."""
    if not (services.HAS_POSTGRES and services.HAS_REDIS):
        pytest.skip("SKIPPED LOUDLY: a Celery worker needs PostgreSQL and Redis")
    env = process_env(**extra_env)
    ready = tmp_path / f"worker-ready-{name}"
    command = [sys.executable, "-m", "celery", "-A", "l10console", "worker", "-l", "info", "--pool", "solo"]
    command += ["--without-heartbeat", "--without-mingle", "--without-gossip", "-n", f"{name}-{os.getpid()}@%h"]
    # --purge: tasks an earlier test's beat left in the test broker's queues (each beat
    # entry is due at a worker's start) are dropped, not run ahead of this test's own.
    command += ["-Q", queues, *(["--purge"] if purge else [])]  # a test may queue its task before
    if beat:
        command += ["--beat", "--schedule", str(tmp_path / f"beat-schedule-{name}")]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "ready." in line:
                ready.touch()

    threading.Thread(target=read, daemon=True).start()
    try:
        wait_for(ready.exists, timeout=30, what=f"the Celery worker {name} to be ready")
    except AssertionError:
        process.kill()
        raise AssertionError("worker output:\n" + "".join(lines[-40:])) from None
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def celery_worker_process(transactional_db: None, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """``celery worker --beat`` on both queues in its own process, on the test database
    and the test Redis.

    The agent heartbeat interval is 1 s in the worker, so beat's periodic tasks that
    follow it (marking silent agents) run every second.
    """
    with celery_worker(tmp_path, L10_AGENT_HEARTBEAT_INTERVAL="1") as process:
        yield process


# --- the browser ----------------------------------------------------------------------

CHROMIUM = os.environ.get("L10_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        if services.CI:
            pytest.fail(f"Chromium is not installed at {CHROMIUM}")
        pytest.skip(f"SKIPPED LOUDLY: Chromium is not installed at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread for as long as it is open;
    # the ORM calls the tests make between browser steps are safe here (no concurrent use
    # of a connection). Per module and undone afterwards: left set, the variable leaks into
    # later tests and their subprocesses (`check --deploy` fails on it: async.E001).
    with pytest.MonkeyPatch.context() as mp, sync_playwright() as pw:
        mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: object) -> Iterator[object]:
    context = chromium.new_context(viewport={"width": 1366, "height": 900})  # type: ignore[attr-defined]
    context.set_default_timeout(10_000)
    page = context.new_page()
    yield page
    context.close()
