"""Test settings: the real settings module, pointed at the machine's PostgreSQL and
Redis when they answer (see tests/services.py)."""

from __future__ import annotations

import os

from tests import services

if services.HAS_POSTGRES:
    os.environ["L10_POSTGRES_HOST"] = services.PG_HOST
    os.environ["L10_POSTGRES_PORT"] = str(services.PG_PORT)
    os.environ.setdefault("L10_POSTGRES_DB", "l10console")
else:
    os.environ.pop("L10_POSTGRES_HOST", None)
if services.HAS_REDIS:
    os.environ["L10_REDIS_HOST"] = services.REDIS_HOST
    os.environ["L10_REDIS_PORT"] = str(services.REDIS_PORT)
    os.environ["L10_REDIS_DB"] = str(services.REDIS_DB)
else:
    os.environ.pop("L10_REDIS_HOST", None)
if services.EMBEDDED:
    # A file of its own (tests run in threads and in a live server): never the console's.
    os.environ["L10_SQLITE_PATH"] = os.environ.get("L10_TEST_SQLITE_PATH", "var/tests.sqlite3")
os.environ.setdefault("L10_SECRET_KEY", "tests-only-secret-key-not-for-production-0123456789abcdef")
os.environ.setdefault(
    "L10_AUDIT_KEYS", "t2:tests-only-audit-key-two-0123456789abcdef,t1:tests-only-audit-key-one-0123456789abcdef"
)
os.environ["L10_DEBUG"] = "0"
os.environ["L10_TLS"] = "0"
os.environ.setdefault("L10_ALLOWED_HOSTS", "localhost,127.0.0.1,testserver")

from l10console.settings import *  # noqa: F403

if services.EMBEDDED:
    # A file, not SQLite's shared in-memory database, whose table locks do not wait: the
    # embedded default's writers (requests, the task runner's threads) queue on the file.
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": os.environ.get("L10_TEST_EMBEDDED_DB") or str(BASE_DIR / "var" / "tests-embedded.sqlite3")  # noqa: F405
    }

if services.HAS_POSTGRES:
    # Django empties the tables between transactional tests with TRUNCATE, which the audit
    # trail refuses unless the session allows it (audit/migrations/0003_no_truncate.py).
    DATABASES["default"]["OPTIONS"]["options"] = "-c l10.audit_truncate=allow"  # noqa: F405

# Fast hashing keeps the cast's logins cheap; production uses Django's default.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
