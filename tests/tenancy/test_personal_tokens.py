"""A person's own API tokens: created once, stored hashed, revoked by their owner only."""

from __future__ import annotations

import pytest

from core.tokens import hash_token
from tenancy.models import PersonalToken
from tenancy.services import personal_token_create
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


def test_a_new_token_is_shown_once_and_stored_hashed(operator_a):
    client = client_for(operator_a)
    response = client.post("/account/tokens/new/", {"name": "laptop"})
    assert response.status_code == 201
    plain = response.context["new_token"]
    assert plain.startswith("l10p_") and plain in response.content.decode()
    token = PersonalToken.objects.get()
    assert token.token_hash == hash_token(plain) and plain not in token.token_hash
    assert token.user == operator_a
    assert plain not in client.get("/account/tokens/").content.decode()


def test_a_token_needs_a_name(operator_a):
    response = client_for(operator_a).post("/account/tokens/new/", {"name": "  "})
    assert response.status_code == 400
    assert "Give the token a name" in response.content.decode()
    assert not PersonalToken.objects.exists()


def test_people_see_and_revoke_only_their_own_tokens(operator_a, viewer_a):
    mine, _ = personal_token_create(user=operator_a, name="mine")
    theirs, _ = personal_token_create(user=viewer_a, name="theirs")
    page = client_for(operator_a).get("/account/tokens/").content.decode()
    assert "mine" in page and "theirs" not in page
    assert client_for(operator_a).post(f"/account/tokens/{theirs.pk}/revoke/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None
    assert client_for(operator_a).post(f"/account/tokens/{mine.pk}/revoke/").status_code == 302
    mine.refresh_from_db()
    assert mine.revoked_at is not None


def test_anonymous_visitors_are_sent_to_sign_in(db):
    response = client_for(None).get("/account/tokens/")
    assert response.status_code == 302 and "/login/" in response["Location"]
