"""Django settings, built from ``L10Settings`` (the ``L10_*`` environment variables).

No ``L10_POSTGRES_HOST``: SQLite in WAL mode. No ``L10_REDIS_HOST``: the embedded default
(local-memory cache, in-process channel layer and task runner). The code path is the same.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from core.config import L10Settings

BASE_DIR = Path(__file__).resolve().parent.parent
L10 = L10Settings()

DEBUG = L10.debug
EMBEDDED = L10.embedded


def _secret_key() -> str:
    if L10.secret_key:
        return L10.secret_key
    if not DEBUG:
        raise ImproperlyConfigured("L10_SECRET_KEY must be set when L10_DEBUG is off (no production default).")
    # A development key, kept in var/ so sessions survive a restart of `make run`.
    path = BASE_DIR / "var" / "secret_key"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = L10.allowed_hosts

INSTALLED_APPS = [
    # First, so that `runserver` serves ASGI (sockets included) for development; real
    # deployments serve with uvicorn.
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "ninja",
    # The apps, bottom to top (docs/architecture.md, "Layers"); l10console, the wiring, is not one.
    "core",
    "tenancy",
    "realtime",
    "events",
    "audit",
    "fleet",
    "control",
    "costs",
    "ingest",
    "dashboard",
]

MIDDLEWARE = [
    "core.observability.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "l10console.urls"
ASGI_APPLICATION = "l10console.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "tenancy.context_processors.tenancy",
            ],
        },
    },
]


def _databases() -> dict[str, Any]:
    if L10.uses_postgres:
        return {
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "HOST": L10.postgres_host,
                "PORT": L10.postgres_port,
                "NAME": L10.postgres_db,
                "USER": L10.postgres_user,
                "PASSWORD": L10.postgres_password,
                # Under ASGI every request runs in its own thread: a pool, never CONN_MAX_AGE.
                "OPTIONS": {"pool": {"min_size": 1, "max_size": L10.postgres_pool_max, "timeout": 10}},
                "TEST": {"NAME": f"test_{L10.postgres_db}"},
            }
        }
    path = Path(L10.sqlite_path) if L10.sqlite_path else BASE_DIR / "var" / "l10console.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    return {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": path,
            "OPTIONS": {
                # IMMEDIATE takes the write lock at BEGIN, so concurrent writers queue on
                # the busy timeout instead of failing with "database is locked".
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }


DATABASES = _databases()
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


def _caches() -> dict[str, Any]:
    if L10.uses_redis:
        return {
            "default": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": L10.redis_url,
                "KEY_PREFIX": "l10",
                "OPTIONS": {
                    "CLIENT_CLASS": "django_redis.client.DefaultClient",
                    # Fail fast when Redis is gone; callers decide how to degrade.
                    "SOCKET_CONNECT_TIMEOUT": 1,
                    "SOCKET_TIMEOUT": 1,
                    "CONNECTION_POOL_KWARGS": {"max_connections": 200},
                },
            }
        }
    return {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "l10"}}


CACHES = _caches()


# No channel layer: sockets are fed by each process's hub (realtime.hub), which holds
# one Redis subscription per tenant instead of one per socket (docs/architecture.md, "The hub").
CHANNEL_LAYERS: dict[str, Any] = {}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
# Serve straight from the app and static/ folders, so a fresh checkout needs no collectstatic.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# Security: cookies and redirects assume TLS unless L10_TLS is off (L10_DEBUG turns it off).
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_SECURE = L10.tls
CSRF_COOKIE_SECURE = L10.tls
SECURE_SSL_REDIRECT = L10.tls
SECURE_HSTS_SECONDS = 31_536_000 if L10.tls else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = L10.tls
SECURE_HSTS_PRELOAD = L10.tls
# TLS usually ends at the load balancer, which says so in this header.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Health probes come over plain HTTP from inside the cluster.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]

# Ingest limits (ingest.api); the body limit is enforced before the body is read (core.asgi).
DATA_UPLOAD_MAX_MEMORY_SIZE = L10.ingest_max_body_bytes

# Celery: the broker is Redis in production; the embedded default runs tasks in-process.
CELERY_BROKER_URL = L10.redis_url if L10.uses_redis else "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Every periodic schedule lives here; `core.runner` runs the same table in-process.
CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "fleet-mark-unresponsive": {
        "task": "fleet.tasks.mark_unresponsive",
        "schedule": timedelta(seconds=max(1, L10.agent_heartbeat_interval)),
    },
    "fleet-rollup-metrics": {"task": "fleet.tasks.rollup_metrics", "schedule": timedelta(minutes=1)},
    "fleet-purge-metrics": {"task": "fleet.tasks.purge_metrics", "schedule": timedelta(hours=1)},
    "control-resume-expired-pauses": {
        "task": "control.tasks.resume_expired_pauses",
        "schedule": timedelta(seconds=15),
    },
    "control-purge-idempotency": {"task": "control.tasks.purge_idempotency", "schedule": timedelta(hours=1)},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

NINJA_PAGINATION_CLASS = "ninja.pagination.LimitOffsetPagination"
