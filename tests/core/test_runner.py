"""The embedded task runner (core/runner.py): tasks started from several threads at once,
before any task module was imported, each find their task."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# A fresh process: nothing has imported the apps' tasks modules yet.
PROBE = """
import threading
import django
django.setup()
from celery import current_app
from core import runner

start = threading.Barrier(8)
missing = []

def first_task():
    start.wait()
    runner._discover_tasks()
    try:
        current_app.tasks["audit.tasks.seal"]
    except Exception as exc:
        missing.append(repr(exc))

threads = [threading.Thread(target=first_task) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("missing:", len(missing), missing[:1])
"""


def test_tasks_started_from_several_threads_at_once_are_all_found():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("L10_", "DJANGO_"))}
    env.update(DJANGO_SETTINGS_MODULE="l10console.settings", L10_DEBUG="1")  # the embedded default
    for _ in range(5):  # the race needs a fresh process each time
        done = subprocess.run(
            [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert "missing: 0 []" in done.stdout, done.stdout
