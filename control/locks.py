"""A short lock per agent, for a fast, clear answer when two control operations meet.

Correctness does not rest on it (docs/architecture.md, "Lock for speed, database for correctness"):
the change itself is fenced by the agent's version under ``SELECT … FOR UPDATE``. Redis
in production (``SET key token NX PX ttl``, released by compare-and-delete in Lua); the
process's cache in the embedded default.
"""

from __future__ import annotations

import secrets
from functools import cache
from typing import Any

from django.conf import settings
from django.core.cache import cache as django_cache

RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class LockUnavailable(Exception):
    """The lock's store cannot be reached: control fails closed."""


def lock_key(agent_id: object) -> str:
    return f"l10:lock:agent:{agent_id}"


@cache
def _client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


@cache
def _release_script(url: str) -> Any:
    return _client(url).register_script(RELEASE_LUA)


def acquire(agent_id: object, ttl_ms: int | None = None) -> str | None:
    """A token if the lock was free (now held for ``ttl_ms``), None if another holds it."""
    token = secrets.token_hex(16)
    ttl_ms = ttl_ms or settings.L10.control_lock_ttl * 1000
    try:
        if settings.L10.uses_redis:
            taken = _client(settings.L10.redis_url).set(lock_key(agent_id), token, nx=True, px=ttl_ms)
        else:
            taken = django_cache.add(lock_key(agent_id), token, timeout=ttl_ms / 1000)
    except Exception as exc:
        raise LockUnavailable(str(exc)) from exc
    return token if taken else None


def check() -> None:
    """``LockUnavailable`` when the lock store cannot be reached now: a batch is refused
    before anything is stored, since none of its items could take its lock."""
    try:
        if settings.L10.uses_redis:
            _client(settings.L10.redis_url).ping()
    except Exception as exc:
        raise LockUnavailable(str(exc)) from exc


def holder(agent_id: object) -> str | None:
    """The token of the lock's current holder, None when the lock is free."""
    try:
        if settings.L10.uses_redis:
            value = _client(settings.L10.redis_url).get(lock_key(agent_id))
            return value.decode() if value is not None else None
        found = django_cache.get(lock_key(agent_id))
    except Exception as exc:
        raise LockUnavailable(str(exc)) from exc
    return str(found) if found is not None else None


def release(agent_id: object, token: str) -> None:
    """Release only if still ours: a lock that expired and was taken since is left alone."""
    try:
        if settings.L10.uses_redis:
            url = settings.L10.redis_url
            _release_script(url)(keys=[lock_key(agent_id)], args=[token])
        elif django_cache.get(lock_key(agent_id)) == token:
            django_cache.delete(lock_key(agent_id))
    except Exception:  # noqa: S110 - it expires by itself; the change is already decided
        pass
