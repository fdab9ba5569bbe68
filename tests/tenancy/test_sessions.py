"""Sessions end when idle too long, and in any case some hours after sign-in
(tenancy/sessions.py, docs/operations.md "Sessions")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client, override_settings

from core.config import L10Settings
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

START = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def signed_in(client: Client) -> bool:
    response = client.get("/t/acme/agents/")
    assert response.status_code in (200, 302)
    return response.status_code == 200


def sign_in(client: Client) -> None:
    assert client.post("/login/", {"username": "alice", "password": PASSWORD}).status_code == 302


def test_the_defaults_are_thirty_minutes_idle_and_twelve_hours_in_all():
    config = L10Settings(environ={})
    assert (config.session_idle_timeout, config.session_max_age) == (1800, 43_200)


def test_an_idle_session_is_signed_out(admin_a):
    client = Client()
    with time_machine.travel(START, tick=False) as clock:
        sign_in(client)
        assert signed_in(client)
        clock.shift(timedelta(minutes=29))
        assert signed_in(client)  # 29 idle minutes: still in, and the clock starts again
        clock.shift(timedelta(minutes=30, seconds=30))
        response = client.get("/t/acme/agents/")
        assert response.status_code == 302 and response["Location"].startswith("/login/")
        # Signed out for good: the session is gone, not just this request.
        clock.shift(timedelta(seconds=1))
        assert not signed_in(client)


def test_an_active_session_stays_signed_in_until_its_maximum_age(admin_a):
    client = Client()
    with (
        override_settings(L10=L10Settings(environ={"L10_SESSION_MAX_AGE": "7200"})),
        time_machine.travel(START, tick=False) as clock,
    ):
        sign_in(client)
        for _ in range(7):  # a request every 17 minutes, 119 minutes in all
            clock.shift(timedelta(minutes=17))
            assert signed_in(client)
        clock.shift(timedelta(minutes=2))  # 121 minutes after sign-in
        assert not signed_in(client)


def test_the_idle_limit_follows_its_setting(admin_a):
    client = Client()
    with (
        override_settings(L10=L10Settings(environ={"L10_SESSION_IDLE_TIMEOUT": "300"})),
        time_machine.travel(START, tick=False) as clock,
    ):
        sign_in(client)
        assert signed_in(client)
        clock.shift(timedelta(minutes=4))
        assert signed_in(client)
        clock.shift(timedelta(minutes=6))
        assert not signed_in(client)
