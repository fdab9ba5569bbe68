from __future__ import annotations

import re

import pytest

from core.tokens import hash_token
from tenancy.models import ApiToken
from tests.conftest import client_for

pytestmark = pytest.mark.django_db


def test_an_admin_creates_a_token_and_sees_it_once(admin_a, tenant_a):
    client = client_for(admin_a)
    response = client.post("/t/acme/settings/tokens/new/", {"name": "search fleet"})
    assert response.status_code == 201
    page = response.content.decode()
    plain = re.search(r"<code>(l10_[0-9a-f]{8}_[A-Za-z0-9_-]+)</code>", page)
    assert plain, "the new token is shown"
    token = ApiToken.objects.get(tenant=tenant_a)
    assert token.token_hash == hash_token(plain.group(1))
    assert token.created_by == admin_a
    # Shown once: the list page afterwards has only the prefix.
    again = client.get("/t/acme/settings/tokens/").content.decode()
    assert plain.group(1) not in again
    assert token.prefix in again


def test_a_token_needs_a_name(admin_a):
    response = client_for(admin_a).post("/t/acme/settings/tokens/new/", {"name": "  "})
    assert response.status_code == 400
    assert "Give the token a name" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_revoking_stops_the_token_and_says_so(admin_a, token_a, agent_a, client):
    token = ApiToken.objects.get()
    response = client_for(admin_a).post(f"/t/acme/settings/tokens/{token.pk}/revoke/", follow=True)
    assert "is revoked" in response.content.decode()
    token.refresh_from_db()
    assert token.revoked_at is not None
    refused = client.post(
        "/api/v1/ingest/register",
        '{"external_id": "x"}',
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token_a}",
    )
    assert refused.json()["error"]["code"] == "E10003"
    again = client_for(admin_a).post(f"/t/acme/settings/tokens/{token.pk}/revoke/", follow=True)
    assert "already revoked" in again.content.decode()


def test_an_admin_cannot_revoke_another_tenants_token_through_their_own_tenant(admin_a, token_b):
    other = ApiToken.objects.get()
    response = client_for(admin_a).post(f"/t/acme/settings/tokens/{other.pk}/revoke/")
    assert response.status_code == 404
    other.refresh_from_db()
    assert other.revoked_at is None
