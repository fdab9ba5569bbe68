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


def _audit_keys() -> dict[str, str]:
    """The audit chain's keys by id, the current one first (docs/audit.md, "The chain")."""
    if L10.audit_keys:
        return dict(L10.audit_keys)
    if not DEBUG:
        raise ImproperlyConfigured("L10_AUDIT_KEYS must be set when L10_DEBUG is off (no production default).")
    path = BASE_DIR / "var" / "audit_key"  # a development key, as for SECRET_KEY
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return {"dev": path.read_text().strip()}


AUDIT_KEYS = _audit_keys()
ALLOWED_HOSTS = L10.allowed_hosts

INSTALLED_APPS = [
    # First, so that `runserver` serves ASGI (sockets included) for development; real
    # deployments serve with uvicorn.
    "daphne",
    "l10console.admin_apps.ConsoleAdminConfig",  # Django's admin, every change audited
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "ninja",
    "axes",
    "csp",
    # The apps, bottom to top (docs/architecture.md, "Layers"); l10console, the wiring, is not one.
    "core",
    "tenancy",
    "realtime",
    "events",
    "audit",
    "fleet",
    "control",
    "members",
    "costs",
    "approvals",
    "ingest",
    "alerts",
    "dashboard",
]

MIDDLEWARE = [
    "core.observability.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # The console's own 404 page when DEBUG is on as well (off it, Django's handler shows it).
    "core.notfound.DebugNotFoundMiddleware",
    "core.dblost.DatabaseLostMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Where the request came from, for audit entries written away from a view (audit/context.py).
    "audit.context.AuditContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # After CSRF (a forged form is refused as such first): forms and query strings checked
    # once, as core/inputs.py says, before any view reads them.
    "core.inputs.InputBoundaryMiddleware",
    # Content-Security-Policy on every answer (CONTENT_SECURITY_POLICY below).
    "csp.middleware.CSPMiddleware",
    # After authentication: a session idle or old past its limits is signed out here.
    "tenancy.sessions.SessionTimeoutMiddleware",
    # Last, as django-axes asks: turns a sign-in refused during a lockout into its 429 page.
    "axes.middleware.AxesMiddleware",
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
                "alerts.context_processors.alerts",
                "approvals.context_processors.approvals",
            ],
        },
    },
    # The hot fragments (an agent's row and summary), rendered once per row or live update:
    # core.jinja, docs/architecture.md "Templates". Only asked for by name through
    # core.jinja.render or {% fragment %}; no context processors, no request.
    {
        "BACKEND": "django.template.backends.jinja2.Jinja2",
        "DIRS": [BASE_DIR / "templates" / "jinja2"],
        "APP_DIRS": False,
        "OPTIONS": {"environment": "core.jinja.environment"},
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
# Sign-in (docs/operations.md, "Sign-in"): axes refuses while a lockout holds, then the
# model backend looks the user up by the normalised username (tenancy/usernames.py).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "tenancy.usernames.NormalizedUsernameBackend",
]
# The lockout (tenancy/lockout.py): per (username, address) and, looser, per address,
# counted in the cache; limits and cool-off follow L10_LOGIN_MAX_FAILURES and L10_LOGIN_LOCKOUT.
AXES_HANDLER = "tenancy.lockout.LoginLockoutHandler"
AXES_FAILURE_LIMIT = "tenancy.lockout.failure_limit"
AXES_COOLOFF_TIME = "tenancy.lockout.cool_off"
AXES_USERNAME_CALLABLE = "tenancy.lockout.username"
AXES_LOCKOUT_CALLABLE = "tenancy.lockout.lockout_response"
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_ENABLE_ADMIN = False  # its admin pages list database records; the cache handler keeps none
AXES_VERBOSE = False
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "password"]

# Sessions (docs/operations.md, "Sessions"): signed out after L10_SESSION_IDLE_TIMEOUT
# without a request (tenancy.sessions), and L10_SESSION_MAX_AGE after sign-in at most.
SESSION_COOKIE_AGE = L10.session_max_age
# Django's database sessions, read by one plain statement (tenancy/session_store.py).
SESSION_ENGINE = "tenancy.session_store"
SESSION_SAVE_EVERY_REQUEST = False

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
FORMAT_MODULE_PATH = ["l10console.formats"]
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


def _socket_sources() -> list[str]:
    """The console's own origins as socket (ws/wss) sources: a browser's ``'self'`` in
    ``connect-src`` covers them too, but not every browser did, so they are named."""
    found = []
    for origin in L10.allowed_origins:
        scheme, rest = origin.split("://", 1)
        found.append(("wss" if scheme == "https" else "ws") + "://" + rest)
    return found


# Content-Security-Policy (docs/operations.md, "Security headers"): no inline script or
# style anywhere, pages and the admin alike; scripts, styles and sockets from the console only.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'"],
        "font-src": ["'self'"],
        "connect-src": ["'self'", *_socket_sources()],
        "frame-ancestors": ["'none'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
    },
}

# Ingest limits (ingest.api); the body limit is enforced before the body is read (core.asgi).
DATA_UPLOAD_MAX_MEMORY_SIZE = L10.ingest_max_body_bytes

# Celery: the broker is Redis in production; the embedded default runs tasks in-process.
# Alert e-mail (alerts/notify.py): through the mail server when one is named, else to the log.
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend" if L10.smtp_host else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_HOST = L10.smtp_host or "localhost"
EMAIL_PORT = L10.smtp_port
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = L10.email_from

CELERY_BROKER_URL = L10.redis_url if L10.uses_redis else "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A task acknowledged late (control.tasks.run_batch) whose worker died is given to another
# worker after this many seconds (docs/operations.md, "Faults").
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": L10.celery_visibility_timeout,
    # How often a worker looks for such tasks: every scan, a quarter of the timeout apart
    # (at most 10 s: one cheap Redis query).
    "unacked_restore_interval": min(10, max(1, L10.celery_visibility_timeout // 4)),
    "unacked_restore_throttle": 1,
}
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
    "alerts-evaluate": {"task": "alerts.tasks.evaluate", "schedule": timedelta(seconds=L10.alert_eval_interval)},
    "alerts-deliver": {"task": "alerts.tasks.deliver", "schedule": timedelta(seconds=5)},
    "audit-seal": {"task": "audit.tasks.seal", "schedule": timedelta(seconds=L10.audit_seal_interval)},
    "events-purge": {"task": "events.tasks.purge", "schedule": timedelta(hours=1)},
    "costs-rollup": {"task": "costs.tasks.rollup", "schedule": timedelta(minutes=5)},
    "approvals-expire": {"task": "approvals.tasks.expire", "schedule": timedelta(seconds=5)},
}
# Two queues, one worker each in production (docs/operations.md, "Background work"):
# ``control`` for bulk batches and the short periodic checks, ``background`` for rollups,
# backfills and purges, so heavy work of any tenant never delays control. Every task is
# routed here by name (tests/test_task_routes.py); anything unrouted goes to ``background``.
CELERY_TASK_DEFAULT_QUEUE = "background"
CELERY_TASK_ROUTES = {
    "control.tasks.run_batch": {"queue": "control"},
    "control.tasks.resume_expired_pauses": {"queue": "control"},
    "fleet.tasks.mark_unresponsive": {"queue": "control"},
    "fleet.tasks.rollup_metrics": {"queue": "background"},
    "fleet.tasks.rollup_backlog": {"queue": "background"},
    "fleet.tasks.rollup_range": {"queue": "background"},
    "fleet.tasks.purge_metrics": {"queue": "background"},
    "control.tasks.purge_idempotency": {"queue": "background"},
    "alerts.tasks.evaluate": {"queue": "control"},
    "alerts.tasks.deliver": {"queue": "control"},
    "audit.tasks.seal": {"queue": "control"},
    "events.tasks.purge": {"queue": "background"},
    "costs.tasks.price_unpriced": {"queue": "background"},
    "costs.tasks.rollup": {"queue": "background"},
    "costs.tasks.reprice": {"queue": "background"},
    "approvals.tasks.expire": {"queue": "control"},
}
# A worker takes one task at a time beyond those it runs: a long task never sits on
# short ones it has prefetched.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

NINJA_PAGINATION_CLASS = "ninja.pagination.LimitOffsetPagination"
