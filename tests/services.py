"""Which real services the suite runs on.

PostgreSQL and Redis are used whenever they answer (127.0.0.1 unless the ``L10_*``
variables say otherwise). Where one does not answer, tests that need it skip with a loud
reason, unless ``CI`` is set: then the run fails at once.

``L10_TEST_EMBEDDED=1`` runs the suite on the embedded default instead, as ``make run``
serves it: SQLite and local memory, whatever answers. Tests marked as needing PostgreSQL
or Redis are then left out on purpose (``make test`` runs them in its first pass).
"""

from __future__ import annotations

import os
import socket

CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def answers(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


PG_HOST = os.environ.get("L10_POSTGRES_HOST") or "127.0.0.1"
PG_PORT = int(os.environ.get("L10_POSTGRES_PORT") or 5432)
REDIS_HOST = os.environ.get("L10_REDIS_HOST") or "127.0.0.1"
REDIS_PORT = int(os.environ.get("L10_REDIS_PORT") or 6379)
# The suite's own Redis database, flushed at the start of a run: never the console's.
REDIS_DB = int(os.environ.get("L10_TEST_REDIS_DB") or 15)

EMBEDDED = os.environ.get("L10_TEST_EMBEDDED", "").strip().lower() in {"1", "true", "yes"}

HAS_POSTGRES = not EMBEDDED and answers(PG_HOST, PG_PORT)
HAS_REDIS = not EMBEDDED and answers(REDIS_HOST, REDIS_PORT)

MISSING: dict[str, str | None]
if EMBEDDED:
    MISSING = {
        "postgres": "the embedded run (L10_TEST_EMBEDDED) uses SQLite",
        "redis": "the embedded run (L10_TEST_EMBEDDED) uses local memory",
    }
else:
    MISSING = {
        "postgres": None if HAS_POSTGRES else f"PostgreSQL at {PG_HOST}:{PG_PORT} does not answer",
        "redis": None if HAS_REDIS else f"Redis at {REDIS_HOST}:{REDIS_PORT} does not answer",
    }

if CI and not EMBEDDED:
    down = [reason for reason in MISSING.values() if reason]
    if down:
        raise RuntimeError("CI=true and the suite's services are missing: " + "; ".join(down))
