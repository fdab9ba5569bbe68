"""The Procfile is the production topology, and `make prod` refuses to run it half-configured."""

from __future__ import annotations

import os
import re
import subprocess

from django.conf import settings

from tests.conftest import ROOT
from tests.topology.conftest import procfile


def test_the_procfile_runs_the_web_servers_a_worker_per_queue_and_one_beat():
    processes = procfile()
    assert set(processes) == {"web", "control", "background", "beat"}

    web = processes["web"]
    assert web.startswith("exec uvicorn l10console.asgi:application ")
    assert "--port $PORT" in web  # honcho gives web.1, web.2, … a port each
    for flag in ("--proxy-headers", "--lifespan on", "--ws-per-message-deflate false"):
        assert flag in web

    queues = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    queues.add(settings.CELERY_TASK_DEFAULT_QUEUE)
    workers = {name: command for name, command in processes.items() if " worker " in command}
    served = [re.findall(r"-Q (\S+)", command) for command in workers.values()]
    assert sorted(q for found in served for q in found) == sorted(queues) == ["background", "control"]
    assert all(len(found) == 1 and "," not in found[0] for found in served), "one queue per worker"
    assert not any(re.search(r"\s(--beat|-B)\b", command) for command in workers.values())
    beats = [name for name, command in processes.items() if re.search(r"\bcelery -A l10console beat\b", command)]
    assert beats == ["beat"]
    assert all(command.startswith("exec ") for command in processes.values()), "signals reach the process itself"


def _make_prod(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("L10_", "DJANGO_"))}
    # -o: the virtualenv is taken as it is, never reinstalled by this test.
    command = ["make", "-s", "--no-print-directory", "-o", ".venv/.installed", "prod"]
    return subprocess.run(command, cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=60)


def test_make_prod_refuses_without_postgres_redis_and_the_secrets():
    result = _make_prod(L10_SECRET_KEY="a-secret-key-of-the-deployment-0123456789")
    assert result.returncode != 0
    assert "make prod: set L10_POSTGRES_HOST L10_REDIS_HOST L10_AUDIT_KEYS first" in result.stderr


def test_make_prod_refuses_debug_mode():
    needed = {name: "set" for name in ("L10_POSTGRES_HOST", "L10_REDIS_HOST", "L10_SECRET_KEY", "L10_AUDIT_KEYS")}
    result = _make_prod(**needed, L10_DEBUG="On")
    assert result.returncode != 0
    assert "make prod: L10_DEBUG is on" in result.stderr
