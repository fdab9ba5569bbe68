"""Independent parts of one page, read side by side.

A page whose parts each wait on the database (the overview's tiles and its charts) need
not wait for them one after the other: ``beside(fn)`` starts ``fn`` on one of a few
threads kept for this, and the request's own thread goes on with the next part. Each
part thread holds at most one pooled connection, and gives it back after every part;
the HTTP thread pool is sized so that these threads always find one (``asgi.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.conf import settings
from django.db import connection

T = TypeVar("T")

PART_THREADS = 2
_executor = ThreadPoolExecutor(max_workers=PART_THREADS, thread_name_prefix="page-part")


def http_threads(pool_max: int, wanted: int) -> int:
    """HTTP threads: ``wanted`` (``L10_HTTP_THREADS``), at most what a pool of ``pool_max``
    connections serves beside the part threads, so no thread waits for a connection."""
    return min(wanted, pool_max - PART_THREADS if pool_max > PART_THREADS else pool_max)


def beside(fn: Callable[[], T]) -> Callable[[], T]:
    """Start ``fn`` now, on a part thread; the returned callable waits for its result (or
    raises its exception).

    Runs inline inside a transaction, whose rows another connection would not see, and
    when the connection pool is too small to spare a connection.
    """
    if connection.in_atomic_block or settings.L10.postgres_pool_max <= PART_THREADS:
        try:
            result = fn()
        except Exception as exc:
            error = exc

            def reraise() -> T:
                raise error

            return reraise
        return lambda: result

    def run() -> T:
        try:
            return fn()
        finally:
            connection.close()  # back to the pool: no request_finished signal on this thread

    return _executor.submit(run).result
