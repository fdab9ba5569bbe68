"""The console's configuration, read from the ``L10_*`` environment variables.

``L10Settings()`` is the Python API's settings object; Django's settings module builds on it,
so the façade and the web app always agree. Every bad value raises
``ImproperlyConfigured`` naming the variable, so a typo stops start-up instead of
surfacing later as a strange failure.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import quote, urlsplit

from django.core.exceptions import ImproperlyConfigured

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})
DEFAULT_PORTS = {"http": 80, "https": 443}
KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,16}")
MIN_KEY_LENGTH = 32


def make_origin(scheme: str, host: str, port: int) -> str:
    """The one spelling of an origin that origins are compared in: ``scheme://host:port``,
    lowercased, the port always written, an IPv6 address in brackets."""
    host = host.lower().strip("[]")
    return f"{scheme.lower()}://{f'[{host}]' if ':' in host else host}:{port}"


def origin_key(value: str) -> str | None:
    """``value`` (an ``Origin`` header, or an entry of ``L10_ALLOWED_ORIGINS``) in the
    spelling of ``make_origin``: ``http://Example.com`` is ``http://example.com:80``.
    None for anything that is not an http(s) origin: ``null``, a path, a user name."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.username is not None or parts.password is not None or parts.path not in ("", "/"):
        return None
    if parts.query or parts.fragment or "?" in value or "#" in value:
        return None
    return make_origin(scheme, parts.hostname, port or DEFAULT_PORTS[scheme])


def default_origins(hosts: list[str], *, tls: bool, port: int) -> list[str]:
    """The console's own pages, as browsers name them: each of ``L10_ALLOWED_HOSTS``
    (patterns such as ``.example.com`` or ``*`` name no one origin and are left out),
    https with ``L10_TLS`` and http without, on the console's port and on the scheme's
    default port (behind a proxy or load balancer)."""
    scheme = "https" if tls else "http"
    found: list[str] = []
    for host in hosts:
        if not host or host == "*" or host.startswith("."):
            continue
        for each in (port, DEFAULT_PORTS[scheme]):
            origin = make_origin(scheme, host, each)
            if origin not in found:
                found.append(origin)
    return found


class EnvReader:
    """Typed reads of environment variables; each error names the variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def raw(self, name: str) -> str | None:
        value = self.environ.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def string(self, name: str, default: str) -> str:
        value = self.raw(name)
        return default if value is None else value

    def optional(self, name: str) -> str | None:
        return self.raw(name)

    def integer(self, name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ImproperlyConfigured(f"{name} must be a whole number, got {value!r}.") from None
        if number < minimum:
            raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {number}.")
        if maximum is not None and number > maximum:
            raise ImproperlyConfigured(f"{name} must be at most {maximum}, got {number}.")
        return number

    def port(self, name: str, default: int) -> int:
        return self.integer(name, default, minimum=1, maximum=65535)

    def seconds(self, name: str, default: int) -> int:
        """A duration in whole seconds; zero or negative durations make no sense here."""
        return self.integer(name, default, minimum=1)

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        word = value.lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ImproperlyConfigured(f"{name} must be true or false (1/0, yes/no, on/off), got {value!r}.")

    def words(self, name: str, default: list[str]) -> list[str]:
        value = self.raw(name)
        if value is None:
            return list(default)
        return [part.strip() for part in value.split(",") if part.strip()]

    def keyring(self, name: str) -> tuple[tuple[str, str], ...]:
        """Comma-separated ``id:secret`` pairs, the current key first (``2:…,1:…``): a key id
        of 1 to 16 letters, digits, ``-`` or ``_``, a secret of at least 32 characters."""
        found: list[tuple[str, str]] = []
        for entry in self.words(name, []):
            key_id, _, secret = entry.partition(":")
            if not (KEY_ID.fullmatch(key_id) and len(secret) >= MIN_KEY_LENGTH):
                raise ImproperlyConfigured(
                    f"{name} must list id:secret pairs, the current key first (e.g. 2:<secret>,1:<old secret>), each "
                    f"id 1-16 letters, digits, - or _, each secret at least {MIN_KEY_LENGTH} characters; "
                    f"got an entry starting {entry[:6]!r}."
                )
            if key_id in dict(found):
                raise ImproperlyConfigured(f"{name} names the key id {key_id!r} twice.")
            found.append((key_id, secret))
        return tuple(found)

    def origins(self, name: str, default: list[str]) -> tuple[str, ...]:
        """Comma-separated origins (``https://console.example.com``, a port if not the default)."""
        found: list[str] = []
        for entry in self.words(name, default):
            origin = origin_key(entry)
            if origin is None:
                raise ImproperlyConfigured(
                    f"{name} must list origins: a scheme (http or https), a host and an optional port, "
                    f"no path (e.g. https://console.example.com,http://10.0.0.5:8010), got {entry!r}."
                )
            if origin not in found:
                found.append(origin)
        return tuple(found)

    def networks(self, name: str, default: list[str]) -> tuple[IPNetwork, ...]:
        """Comma-separated IP addresses or CIDR networks (``10.0.0.0/8``); an address is a /32 or /128."""
        found = []
        for entry in self.words(name, default):
            try:
                # strict: ``10.0.0.1/8`` is refused (host bits set), it is more likely a typo than a wish.
                found.append(ipaddress.ip_network(entry, strict=True))
            except ValueError as exc:
                raise ImproperlyConfigured(
                    f"{name} must list IP addresses or networks (e.g. 127.0.0.1,10.0.0.0/8), got {entry!r}: {exc}."
                ) from None
        return tuple(found)


@dataclass(frozen=True)
class L10Settings:
    """Every ``L10_*`` variable with its default. ``L10Settings()`` reads ``os.environ``."""

    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False, compare=False)

    def __post_init__(self) -> None:
        env = EnvReader(self.environ)
        values = {
            "host": env.string("L10_HOST", "0.0.0.0"),  # noqa: S104 - the documented default: listen on all interfaces
            "port": env.port("L10_PORT", 8010),
            "debug": env.boolean("L10_DEBUG", False),
            "secret_key": env.optional("L10_SECRET_KEY"),
            "allowed_hosts": env.words("L10_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"]),
            "redis_host": env.optional("L10_REDIS_HOST"),
            "redis_port": env.port("L10_REDIS_PORT", 6379),
            "redis_db": env.integer("L10_REDIS_DB", 0, maximum=1023),
            "redis_password": env.optional("L10_REDIS_PASSWORD"),
            "postgres_host": env.optional("L10_POSTGRES_HOST"),
            "postgres_port": env.port("L10_POSTGRES_PORT", 5432),
            "postgres_db": env.string("L10_POSTGRES_DB", "agent_platform"),
            "postgres_user": env.string("L10_POSTGRES_USER", "postgres"),
            "postgres_password": env.string("L10_POSTGRES_PASSWORD", ""),
            "postgres_pool_max": env.integer("L10_POSTGRES_POOL_MAX", 20, minimum=1, maximum=1000),
            "http_threads": env.integer("L10_HTTP_THREADS", 4, minimum=1, maximum=1000),
            "sqlite_path": env.optional("L10_SQLITE_PATH"),
            "cache_ttl_agent_list": env.seconds("L10_CACHE_TTL_AGENT_LIST", 60),
            "cache_ttl_metrics": env.seconds("L10_CACHE_TTL_METRICS", 300),
            "cache_ttl_dashboard": env.seconds("L10_CACHE_TTL_DASHBOARD", 120),
            "cache_ttl_agent_detail": env.seconds("L10_CACHE_TTL_AGENT_DETAIL", 30),
            "control_lock_ttl": env.seconds("L10_CONTROL_LOCK_TTL", 30),
            "control_idempotency_ttl": env.seconds("L10_CONTROL_IDEMPOTENCY_TTL", 86400),
            "ws_heartbeat_interval": env.seconds("L10_WS_HEARTBEAT_INTERVAL", 30),
            "ws_max_connections": env.integer("L10_WS_MAX_CONNECTIONS", 1000, minimum=1),
            "live_overview_interval": env.integer("L10_LIVE_OVERVIEW_INTERVAL", 3, minimum=1, maximum=60),
            "alert_eval_interval": env.integer("L10_ALERT_EVAL_INTERVAL", 15, minimum=1, maximum=3600),
            "alert_renotify_minutes": env.integer("L10_ALERT_RENOTIFY_MINUTES", 60, minimum=1, maximum=10_080),
            "public_url": env.string("L10_PUBLIC_URL", "http://127.0.0.1:8010").rstrip("/"),
            "smtp_host": env.optional("L10_SMTP_HOST"),
            "smtp_port": env.port("L10_SMTP_PORT", 25),
            "email_from": env.string("L10_EMAIL_FROM", "l10-console@localhost"),
            "webhook_allow_private": env.boolean("L10_WEBHOOK_ALLOW_PRIVATE", False),
            "agent_heartbeat_interval": env.seconds("L10_AGENT_HEARTBEAT_INTERVAL", 10),
            "ingest_rate_limit": env.integer("L10_INGEST_RATE_LIMIT", 1000, minimum=1),
            # Milliseconds a web process gathers heartbeats before writing them in one
            # statement; 0 writes each on its own (docs/performance.md, "Heartbeat capacity").
            "heartbeat_coalesce_ms": env.integer("L10_HEARTBEAT_COALESCE_MS", 10, maximum=1000),
            "ingest_max_body_bytes": env.integer("L10_INGEST_MAX_BODY_BYTES", 1_048_576, minimum=1024),
            "ingest_max_batch": env.integer("L10_INGEST_MAX_BATCH", 1000, minimum=1, maximum=100_000),
            "ingest_max_age_days": env.integer("L10_INGEST_MAX_AGE_DAYS", 30, minimum=1, maximum=3650),
            # Seconds a task taken from Redis may run unacknowledged before the broker gives it
            # to another worker: longer than the longest task (an hour), as a killed worker's
            # batch waits this long to run again.
            "celery_visibility_timeout": env.integer("L10_CELERY_VISIBILITY_TIMEOUT", 3900, minimum=1),
            "approval_max_details_bytes": env.integer(
                "L10_APPROVAL_MAX_DETAILS_BYTES", 65_536, minimum=1024, maximum=1_048_576
            ),
            "metrics_minute_retention_days": env.integer("L10_METRICS_MINUTE_RETENTION_DAYS", 3, minimum=2),
            "metrics_rollup_retention_days": env.integer("L10_METRICS_ROLLUP_RETENTION_DAYS", 90, minimum=8),
            "metrics_budget_ms": env.integer("L10_METRICS_QUERY_BUDGET_MS", 2000, minimum=10),
            "metrics_backfill_hours": env.integer("L10_METRICS_BACKFILL_HOURS", 24, minimum=1, maximum=10_000),
            "login_max_failures": env.integer("L10_LOGIN_MAX_FAILURES", 5, minimum=1),
            "login_lockout_seconds": env.seconds("L10_LOGIN_LOCKOUT", 900),
            "session_idle_timeout": env.seconds("L10_SESSION_IDLE_TIMEOUT", 1800),
            "session_max_age": env.seconds("L10_SESSION_MAX_AGE", 43_200),
            "metrics_allowed": env.networks("L10_METRICS_ALLOWED", ["127.0.0.1", "::1"]),
            "trusted_proxies": env.networks("L10_TRUSTED_PROXIES", []),
            "audit_keys": env.keyring("L10_AUDIT_KEYS"),
            "audit_seal_interval": env.integer("L10_AUDIT_SEAL_INTERVAL", 5, minimum=1, maximum=300),
            "event_retention_days": env.integer("L10_EVENT_RETENTION_DAYS", 30, minimum=1, maximum=3650),
        }
        values["tls"] = env.boolean("L10_TLS", not values["debug"])
        hosts, tls, port = cast(list[str], values["allowed_hosts"]), bool(values["tls"]), cast(int, values["port"])
        values["allowed_origins"] = env.origins("L10_ALLOWED_ORIGINS", default_origins(hosts, tls=tls, port=port))
        for name, value in values.items():
            object.__setattr__(self, name, value)

    # Declared for type checkers; set in __post_init__.
    host: str = field(init=False)
    port: int = field(init=False)
    debug: bool = field(init=False)
    tls: bool = field(init=False)
    secret_key: str | None = field(init=False, repr=False)
    allowed_hosts: list[str] = field(init=False)
    redis_host: str | None = field(init=False)
    redis_port: int = field(init=False)
    redis_db: int = field(init=False)
    redis_password: str | None = field(init=False, repr=False)
    postgres_host: str | None = field(init=False)
    postgres_port: int = field(init=False)
    postgres_db: str = field(init=False)
    postgres_user: str = field(init=False)
    postgres_password: str = field(init=False, repr=False)
    postgres_pool_max: int = field(init=False)
    http_threads: int = field(init=False)
    sqlite_path: str | None = field(init=False)
    cache_ttl_agent_list: int = field(init=False)
    cache_ttl_metrics: int = field(init=False)
    cache_ttl_dashboard: int = field(init=False)
    cache_ttl_agent_detail: int = field(init=False)
    control_lock_ttl: int = field(init=False)
    control_idempotency_ttl: int = field(init=False)
    ws_heartbeat_interval: int = field(init=False)
    ws_max_connections: int = field(init=False)
    live_overview_interval: int = field(init=False)
    alert_eval_interval: int = field(init=False)
    alert_renotify_minutes: int = field(init=False)
    public_url: str = field(init=False)
    smtp_host: str | None = field(init=False)
    smtp_port: int = field(init=False)
    email_from: str = field(init=False)
    webhook_allow_private: bool = field(init=False)
    agent_heartbeat_interval: int = field(init=False)
    ingest_rate_limit: int = field(init=False)
    heartbeat_coalesce_ms: int = field(init=False)
    ingest_max_body_bytes: int = field(init=False)
    ingest_max_batch: int = field(init=False)
    ingest_max_age_days: int = field(init=False)
    approval_max_details_bytes: int = field(init=False)
    celery_visibility_timeout: int = field(init=False)
    metrics_minute_retention_days: int = field(init=False)
    metrics_rollup_retention_days: int = field(init=False)
    metrics_budget_ms: int = field(init=False)
    metrics_backfill_hours: int = field(init=False)
    login_max_failures: int = field(init=False)
    login_lockout_seconds: int = field(init=False)
    session_idle_timeout: int = field(init=False)
    session_max_age: int = field(init=False)
    metrics_allowed: tuple[IPNetwork, ...] = field(init=False)
    trusted_proxies: tuple[IPNetwork, ...] = field(init=False)
    allowed_origins: tuple[str, ...] = field(init=False)
    audit_keys: tuple[tuple[str, str], ...] = field(init=False, repr=False)
    audit_seal_interval: int = field(init=False)
    event_retention_days: int = field(init=False)

    @property
    def uses_postgres(self) -> bool:
        return self.postgres_host is not None

    @property
    def uses_redis(self) -> bool:
        return self.redis_host is not None

    @property
    def embedded(self) -> bool:
        """No Redis: cache, hub and task runner live inside the one process."""
        return not self.uses_redis

    @property
    def redis_url(self) -> str:
        host = self.redis_host or "localhost"
        auth = f":{quote(self.redis_password, safe='')}@" if self.redis_password else ""
        return f"redis://{auth}{host}:{self.redis_port}/{self.redis_db}"

    @property
    def postgres_url(self) -> str:
        host = self.postgres_host or "localhost"
        auth = quote(self.postgres_user, safe="")
        if self.postgres_password:
            auth += ":" + quote(self.postgres_password, safe="")
        return f"postgresql://{auth}@{host}:{self.postgres_port}/{quote(self.postgres_db, safe='')}"
