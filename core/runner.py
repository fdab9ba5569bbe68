"""Background work: Celery in production, an in-process pool and timer when embedded.

``enqueue`` is the one way to start a task; it waits for the current transaction to
commit, so a task never sees data that was rolled back. In the embedded default the
same tasks run on a small thread pool, and the periodic ones from
``CELERY_BEAT_SCHEDULE`` on a timer thread started with the ASGI server.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from celery import current_app as celery_app
from django.conf import settings
from django.db import close_old_connections, transaction

log = logging.getLogger(__name__)


_discovered = threading.Event()
_discovering = threading.Lock()


def _discover_tasks() -> None:
    # Outside a worker nothing imports the apps' tasks modules; this is what a worker
    # does at start-up (it fires autodiscover_tasks). Under a lock: a second thread that
    # came while the first was importing would find the loader already started and run
    # its task before the task was registered.
    if _discovered.is_set():
        return
    with _discovering:
        if not _discovered.is_set():
            celery_app.loader.import_default_modules()
            _discovered.set()


def _run_task(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    close_old_connections()
    try:
        _discover_tasks()
        celery_app.tasks[name](*args, **kwargs)
    except Exception:
        log.exception("task %s failed", name)
    finally:
        close_old_connections()


class EmbeddedRunner:
    def __init__(self, workers: int = 4) -> None:
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="l10-task")
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None

    def submit(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.executor.submit(_run_task, name, args, kwargs)

    def start_periodic(self) -> None:
        if self._timer is not None and self._timer.is_alive():
            return
        self._stop.clear()
        self._timer = threading.Thread(target=self._loop, name="l10-beat", daemon=True)
        self._timer.start()

    def stop_periodic(self) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.join(timeout=5)
            self._timer = None

    def _loop(self) -> None:
        schedule = {name: _seconds(entry["schedule"]) for name, entry in settings.CELERY_BEAT_SCHEDULE.items()}
        due = {name: time.monotonic() + every for name, every in schedule.items()}
        while not self._stop.is_set():
            now = time.monotonic()
            for name, when in due.items():
                if when <= now:
                    self.submit(settings.CELERY_BEAT_SCHEDULE[name]["task"], (), {})
                    due[name] = now + schedule[name]
            self._stop.wait(max(0.05, min(due.values()) - time.monotonic()) if due else 1.0)


def _seconds(schedule: Any) -> float:
    if isinstance(schedule, timedelta):
        return schedule.total_seconds()
    if isinstance(schedule, int | float):
        return float(schedule)
    raise TypeError(f"the embedded runner supports interval schedules only, not {schedule!r}")


embedded = EmbeddedRunner()


def enqueue(name: str, *args: Any, on_failure: Callable[[Exception], None] | None = None, **kwargs: Any) -> None:
    """Run the task named ``name`` after the current transaction commits.

    Sending happens after the commit, so it can no longer undo the write: a broker that
    cannot be reached is logged and handed to ``on_failure`` (which records that the work
    was not started), never raised into the request that committed.
    """

    def send() -> None:
        try:
            if settings.EMBEDDED:
                embedded.submit(name, args, kwargs)
            else:
                celery_app.send_task(name, args=args, kwargs=kwargs)
        except Exception as exc:
            log.exception("task %s could not be queued", name)
            if on_failure is not None:
                on_failure(exc)

    transaction.on_commit(send)
