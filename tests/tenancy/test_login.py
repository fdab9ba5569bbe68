from __future__ import annotations

import pytest
from django.test import Client, override_settings

from core.config import L10Settings
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


def sign_in(client: Client, username: str, password: str = PASSWORD):
    return client.post("/login/", {"username": username, "password": password})


def test_signing_in_lands_on_the_first_tenants_agents(admin_a):
    client = Client()
    response = sign_in(client, "alice")
    assert response.status_code == 302
    assert client.get(response["Location"])["Location"] == "/t/acme/"


def test_an_anonymous_visitor_is_sent_to_sign_in():
    response = Client().get("/t/acme/agents/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


def test_sign_in_returns_to_the_page_asked_for_but_never_off_site(admin_a):
    client = Client()
    response = client.post("/login/", {"username": "alice", "password": PASSWORD, "next": "/t/acme/agents/?q=x"})
    assert response["Location"] == "/t/acme/agents/?q=x"
    client = Client()
    response = client.post("/login/", {"username": "alice", "password": PASSWORD, "next": "https://evil.example/"})
    assert response["Location"] == "/"


def test_a_wrong_password_says_so_and_does_not_sign_in(admin_a):
    client = Client()
    response = sign_in(client, "alice", "wrong")
    assert response.status_code == 400
    assert "correct username and password" in response.content.decode()
    assert client.get("/t/acme/agents/").status_code == 302


def test_failed_sign_ins_are_throttled_even_with_the_right_password_afterwards(admin_a):
    with override_settings(L10=L10Settings(environ={"L10_LOGIN_MAX_FAILURES": "3"})):
        for _ in range(3):
            assert sign_in(Client(), "alice", "wrong").status_code == 400
        locked = sign_in(Client(), "alice")
        assert locked.status_code == 429
        assert "Too many failed sign-ins" in locked.content.decode()
        # The lock is the name's from this address only (docs/operations.md, "Sign-in
        # lockout"): the person, elsewhere, still signs in.
        assert sign_in(Client(REMOTE_ADDR="10.9.9.9"), "alice").status_code == 302


def test_the_throttle_counts_per_address_too(admin_a, operator_a):
    with override_settings(L10=L10Settings(environ={"L10_LOGIN_MAX_FAILURES": "1"})):
        # Four failures (the address allowance) spread over names lock the address.
        for name in ("x1", "x2", "x3", "x4"):
            sign_in(Client(), name, "wrong")
        assert sign_in(Client(), "oscar").status_code == 429
        assert sign_in(Client(REMOTE_ADDR="10.1.1.1"), "oscar").status_code == 302


def test_sign_out_needs_a_post(admin_a):
    client = Client()
    sign_in(client, "alice")
    assert client.get("/logout/").status_code == 405
    assert client.post("/logout/").status_code == 302
    assert client.get("/t/acme/agents/").status_code == 302


def test_the_header_lists_every_tenant_of_the_user_and_marks_the_current_one(admin_a, tenant_b):
    from tenancy.models import Membership, Role

    Membership.objects.create(user=admin_a, tenant=tenant_b, role=Role.VIEWER)
    client = Client()
    client.force_login(admin_a)
    page = client.get("/t/globex/agents/").content.decode()
    assert 'href="/t/acme/"' in page and 'href="/t/globex/"' in page
    assert 'href="/t/globex/" aria-current="true"' in page
    assert "Viewer" in page
    # The last tenant visited is where / leads next time.
    assert client.get("/")["Location"] == "/t/globex/"


def test_a_user_without_a_tenant_gets_a_page_that_says_what_to_do(db):
    from tests.factories import UserFactory

    client = Client()
    client.force_login(UserFactory.create(username="lonely"))
    response = client.get("/")
    assert response.status_code == 200
    assert "not a member of any tenant" in response.content.decode()
