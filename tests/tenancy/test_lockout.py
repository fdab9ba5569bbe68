"""Sign-in lockout (tenancy/lockout.py, docs/operations.md "Sign-in lockout"): one counter
per person whatever the spelling, locks per name and address, a looser lock per address,
cool-offs that grow, and a page that stays up when the lockout's store is down."""

from __future__ import annotations

import time
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client, RequestFactory, override_settings

from core.config import L10Settings
from tenancy import lockout
from tests.conftest import wait_for
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

FULL_WIDTH_ALICE = "ＡＬＩＣＥ"


def sign_in(username: str, password: str = PASSWORD, address: str = "127.0.0.1") -> int:
    return Client(REMOTE_ADDR=address).post("/login/", {"username": username, "password": password}).status_code


def limits(failures: int = 3, lockout_seconds: int = 900) -> override_settings:
    env = {"L10_LOGIN_MAX_FAILURES": str(failures), "L10_LOGIN_LOCKOUT": str(lockout_seconds)}
    return override_settings(L10=L10Settings(environ=env))


def locked(username: str, address: str = "127.0.0.1") -> bool:
    request = RequestFactory().post("/login/", {"username": username}, REMOTE_ADDR=address)
    return lockout.is_locked(request, {"username": username})


def test_a_full_width_spelling_signs_in_as_the_same_person(admin_a):
    client = Client()
    response = client.post("/login/", {"username": FULL_WIDTH_ALICE, "password": PASSWORD})
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(admin_a.pk)
    assert sign_in("  Alice ") == 302


def test_every_spelling_of_a_name_shares_one_counter(admin_a):
    with limits(failures=3):
        assert sign_in("alice", "wrong") == 400
        assert sign_in(FULL_WIDTH_ALICE, "wrong") == 400
        assert sign_in("ALICE", "wrong") == 400
        # Three failures in three spellings: every spelling is locked, even with the password.
        for spelling in ("alice", FULL_WIDTH_ALICE, "Alice", "ａｌｉｃｅ"):
            assert sign_in(spelling) == 429, spelling


def test_a_stranger_cannot_lock_a_person_out_from_elsewhere(admin_a):
    with limits(failures=3):
        for _ in range(10):
            sign_in("alice", "wrong", address="203.0.113.9")
        assert sign_in("alice", address="203.0.113.9") == 429
        # The person, from their own address, is not locked by the stranger.
        assert sign_in("alice", address="198.51.100.7") == 302


def test_refused_attempts_during_a_lock_are_not_counted(admin_a):
    with limits(failures=2):
        sign_in("alice", "wrong")
        sign_in("alice", "wrong")
        for _ in range(20):
            assert sign_in("alice", "wrong") == 429
        # Twenty refusals did not reach the address's own limit (2 × 4 failures).
        assert not locked("oscar")


def test_a_successful_sign_in_forgets_the_names_failures(admin_a):
    with limits(failures=3):
        sign_in("alice", "wrong")
        sign_in("alice", "wrong")
        assert sign_in("alice") == 302
        sign_in("alice", "wrong")
        sign_in("alice", "wrong")
        assert sign_in("alice") == 302


def lock_and_time(username: str) -> float:
    """Lock ``username`` from 127.0.0.1 and return how long the lock held, in seconds."""
    for _ in range(2):
        assert sign_in(username, "wrong") in (400, 429)
    assert locked(username)
    started = time.monotonic()
    wait_for(lambda: not locked(username), timeout=12, interval=0.05, what="the lock to end")
    return time.monotonic() - started


def test_each_lock_of_the_same_name_lasts_twice_as_long(admin_a):
    # Real seconds, not a frozen clock: on Redis the keys expire on the server's clock.
    with limits(failures=2, lockout_seconds=1):
        first = lock_and_time("alice")
        second = lock_and_time("alice")
        assert 0.5 <= first <= 2.5, first
        assert 1.5 <= second <= 4.5, second
        assert second > first
        # The cool-off axes reports for this name and address is the next one's length.
        request = RequestFactory().post("/login/", {"username": "alice"}, REMOTE_ADDR="127.0.0.1")
        assert lockout.cool_off(request).total_seconds() == 2


def test_the_admins_sign_in_is_locked_out_too(staff):
    with limits(failures=2):
        for _ in range(2):
            Client().post("/admin/login/?next=/admin/", {"username": "sam", "password": "wrong"})
        response = Client().post("/admin/login/?next=/admin/", {"username": "SAM", "password": PASSWORD})
        assert response.status_code == 429
        assert "Too many failed sign-ins" in response.content.decode()
        assert (
            Client(REMOTE_ADDR="10.2.2.2")
            .post("/admin/login/?next=/admin/", {"username": "sam", "password": PASSWORD})
            .status_code
            == 302
        )


@pytest.mark.redis
def test_sign_in_answers_503_when_the_lockouts_store_is_down(private_redis, admin_a):
    cache = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": private_redis.url,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 1, "SOCKET_TIMEOUT": 1},
        }
    }
    with override_settings(CACHES=cache):
        assert sign_in("alice", "wrong") == 400
        private_redis.kill()
        response = Client().post("/login/", {"username": "alice", "password": PASSWORD})
        staff_response = Client().post("/admin/login/?next=/admin/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 503
    assert "briefly unavailable" in response.content.decode()
    # Staff sign in on the same page, so the admin's sign-in answers the same, not a 500.
    assert staff_response.status_code == 503


def test_an_operator_lifts_a_lock_with_axes_commands(admin_a, operator_a):
    with limits(failures=1):
        sign_in("alice", "wrong")
        for name in ("x1", "x2", "x3", "x4"):  # the address's limit: 4 × 1
            sign_in(name, "wrong", address="192.0.2.4")
        assert locked("alice") and locked("oscar", address="192.0.2.4")
        call_command("axes_reset_ip_username", "127.0.0.1", "ＡＬＩＣＥ", stdout=StringIO())
        assert not locked("alice")
        call_command("axes_reset_ip", "192.0.2.4", stdout=StringIO())
        assert not locked("oscar", address="192.0.2.4")
