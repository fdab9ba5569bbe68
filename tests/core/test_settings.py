from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from core.config import L10Settings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_match_the_seed():
    s = L10Settings(environ={})
    assert (s.host, s.port) == ("0.0.0.0", 8010)
    assert (s.cache_ttl_agent_list, s.cache_ttl_metrics, s.cache_ttl_dashboard, s.cache_ttl_agent_detail) == (
        60,
        300,
        120,
        30,
    )
    assert (s.control_lock_ttl, s.control_idempotency_ttl) == (30, 86400)
    assert (s.ws_heartbeat_interval, s.ws_max_connections, s.agent_heartbeat_interval) == (30, 1000, 10)
    assert s.embedded and not s.uses_postgres
    assert s.debug is False and s.tls is True


def test_urls_are_built_from_the_same_variables():
    s = L10Settings(
        environ={
            "L10_REDIS_HOST": "cache.internal",
            "L10_REDIS_PORT": "6380",
            "L10_REDIS_DB": "2",
            "L10_POSTGRES_HOST": "db.internal",
            "L10_POSTGRES_DB": "agent_platform",
            "L10_POSTGRES_USER": "console",
            "L10_POSTGRES_PASSWORD": "p@ss/word",
        }
    )
    assert s.redis_url == "redis://cache.internal:6380/2"
    assert s.postgres_url == "postgresql://console:p%40ss%2Fword@db.internal:5432/agent_platform"
    assert s.uses_redis and s.uses_postgres and not s.embedded


BAD_VALUES = [
    ("L10_PORT", "abc", "whole number"),
    ("L10_PORT", "99999", "at most 65535"),
    ("L10_PORT", "0", "at least 1"),
    ("L10_REDIS_PORT", "-1", "at least 1"),
    ("L10_POSTGRES_PORT", "5432x", "whole number"),
    ("L10_CACHE_TTL_AGENT_LIST", "-5", "at least 1"),
    ("L10_CACHE_TTL_METRICS", "five", "whole number"),
    ("L10_CACHE_TTL_DASHBOARD", "0", "at least 1"),
    ("L10_CACHE_TTL_AGENT_DETAIL", "1.5", "whole number"),
    ("L10_CONTROL_LOCK_TTL", "-1", "at least 1"),
    ("L10_CONTROL_IDEMPOTENCY_TTL", "", None),  # empty means default: allowed
    ("L10_WS_HEARTBEAT_INTERVAL", "0", "at least 1"),
    ("L10_WS_MAX_CONNECTIONS", "0", "at least 1"),
    ("L10_AGENT_HEARTBEAT_INTERVAL", "ten", "whole number"),
    ("L10_DEBUG", "maybe", "true or false"),
    ("L10_REDIS_DB", "99999", "at most 1023"),
]


@pytest.mark.parametrize(("name", "value", "words"), BAD_VALUES)
def test_a_bad_value_is_refused_naming_the_variable(name, value, words):
    if words is None:
        L10Settings(environ={name: value})
        return
    with pytest.raises(ImproperlyConfigured) as info:
        L10Settings(environ={name: value})
    assert name in str(info.value)
    assert words in str(info.value)


def test_a_bad_metrics_allowed_entry_is_refused_naming_the_variable():
    for value in ("127.0.0.1,localhost", "10.0.0.1/8", "10.0.0.0/33", "::1,fe80::zz"):
        with pytest.raises(ImproperlyConfigured) as info:
            L10Settings(environ={"L10_METRICS_ALLOWED": value})
        assert "L10_METRICS_ALLOWED" in str(info.value), value
        assert "IP addresses or networks" in str(info.value), value
    assert [str(n) for n in L10Settings(environ={}).metrics_allowed] == ["127.0.0.1/32", "::1/128"]
    allowed = L10Settings(environ={"L10_METRICS_ALLOWED": "127.0.0.1, 10.0.0.0/8 ,::1"}).metrics_allowed
    assert [str(n) for n in allowed] == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]


def _start(env: dict[str, str], *check_args: str) -> subprocess.CompletedProcess[str]:
    """``manage.py check`` in a fresh process with only these L10_* variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("L10_")}
    sqlite = tempfile.mktemp(prefix="l10-settings-", suffix=".sqlite3")  # noqa: S306 - a path for a child process
    clean.update({"DJANGO_SETTINGS_MODULE": "l10console.settings", "L10_SQLITE_PATH": sqlite})
    clean.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", "check", *check_args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("name", "value"), [("L10_PORT", "abc"), ("L10_CACHE_TTL_METRICS", "-5"), ("L10_PORT", "99999")]
)
def test_start_up_stops_with_a_message_naming_the_variable(name, value):
    result = _start({"L10_DEBUG": "1", name: value})
    assert result.returncode != 0
    assert name in result.stderr


def test_start_up_without_a_secret_key_outside_debug_stops():
    result = _start({"L10_DEBUG": "0"})
    assert result.returncode != 0
    assert "L10_SECRET_KEY" in result.stderr


def test_start_up_without_audit_keys_outside_debug_stops():
    result = _start({"L10_DEBUG": "0", "L10_SECRET_KEY": "k" * 50})
    assert result.returncode != 0
    assert "L10_AUDIT_KEYS must be set" in result.stderr


@pytest.mark.parametrize(
    "value",
    ["nocolon" + "x" * 40, "1:short", "a b:" + "x" * 40, f"1:{'x' * 40},1:{'y' * 40}", "toolongkeyid12345:" + "x" * 40],
)
def test_bad_audit_keys_stop_start_up_without_echoing_the_secret(value):
    result = _start({"L10_DEBUG": "1", "L10_AUDIT_KEYS": value})
    assert result.returncode != 0 and "L10_AUDIT_KEYS" in result.stderr
    assert "x" * 20 not in result.stderr and "y" * 20 not in result.stderr


def test_audit_keys_are_read_current_first():
    found = L10Settings(environ={"L10_AUDIT_KEYS": f" new:{'n' * 32}, old:{'o' * 40} "}).audit_keys
    assert found == (("new", "n" * 32), ("old", "o" * 40))


def test_the_production_settings_pass_the_deploy_check():
    env = {
        "L10_DEBUG": "0",
        "L10_SECRET_KEY": "a-long-random-production-key-" + "x" * 40,
        "L10_AUDIT_KEYS": "1:" + "k" * 40,
        "L10_ALLOWED_HOSTS": "console.example.com",
    }
    result = _start(env, "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr + result.stdout


def test_the_sockets_allowed_origins_default_to_the_allowed_hosts_on_the_consoles_port():
    production = L10Settings(environ={"L10_ALLOWED_HOSTS": "console.example.com,.example.org", "L10_PORT": "9000"})
    # A pattern (.example.org) names no one origin; the scheme follows L10_TLS.
    assert production.allowed_origins == ("https://console.example.com:9000", "https://console.example.com:443")
    development = L10Settings(environ={"L10_DEBUG": "1"})
    assert "http://localhost:8010" in development.allowed_origins
    assert "http://[::1]:80" in development.allowed_origins
    assert not any(o.startswith("https:") for o in development.allowed_origins)


def test_l10_allowed_origins_replaces_the_default_and_is_spelled_one_way():
    s = L10Settings(environ={"L10_ALLOWED_ORIGINS": "https://Console.Example.com/, http://10.0.0.5:8010"})
    assert s.allowed_origins == ("https://console.example.com:443", "http://10.0.0.5:8010")


@pytest.mark.parametrize(
    "value", ["console.example.com", "*", "ftp://console.example.com", "https://console.example.com/app", "null"]
)
def test_a_bad_allowed_origin_is_refused_naming_the_variable(value):
    with pytest.raises(ImproperlyConfigured, match="L10_ALLOWED_ORIGINS"):
        L10Settings(environ={"L10_ALLOWED_ORIGINS": value})
