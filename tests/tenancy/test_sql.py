"""Tenancy's plain statements against their portable twins, on the same PostgreSQL data."""

from __future__ import annotations

import pytest
from django.utils import timezone

from core.tokens import hash_token
from tenancy import sql
from tenancy.services import personal_token_create, personal_token_revoke, token_create, token_revoke
from tests.parity import parity

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@parity(sql.api_token_by_hash)
def test_both_api_token_lookups_find_the_same_token_and_tenant(tenant_a, tenant_b):
    _, live = token_create(tenant=tenant_a, name="fleet", created_by=None)
    revoked, gone = token_create(tenant=tenant_b, name="old", created_by=None)
    token_revoke(token=revoked)
    _, short = token_create(tenant=tenant_a, name="watcher", created_by=None, scopes=["read"], expires_in_days=1)
    for plain in (live, gone, short):
        fast, orm = sql.api_token_by_hash.plain(hash_token(plain)), sql.api_token_by_hash.portable(hash_token(plain))
        assert fast is not None and orm is not None
        assert (fast.pk, fast.revoked_at, fast.last_used_at) == (orm.pk, orm.revoked_at, orm.last_used_at)
        assert (fast.expires_at, fast.scopes) == (orm.expires_at, orm.scopes)
        assert fast.is_expired(timezone.now()) == orm.is_expired(timezone.now())
        assert (fast.tenant.pk, fast.tenant.slug, fast.tenant.name, fast.tenant.created_at) == (
            orm.tenant.pk, orm.tenant.slug, orm.tenant.name, orm.tenant.created_at,
        )  # fmt: skip
        assert fast.name == orm.name  # a field the statement does not read is loaded when asked for
    acme = sql.api_token_by_hash.plain(hash_token(live))
    assert acme is not None and acme.tenant.slug == "acme"
    missing = hash_token("l10_" + "x" * 40)
    assert sql.api_token_by_hash.plain(missing) is None and sql.api_token_by_hash.portable(missing) is None


@parity(sql.personal_token_by_hash)
def test_both_personal_token_lookups_find_the_same_token_and_user(operator_a, admin_a):
    _, live = personal_token_create(user=operator_a, name="laptop")
    used, old = personal_token_create(user=admin_a, name="old")
    personal_token_revoke(token=used)
    used.__class__.objects.filter(pk=used.pk).update(last_used_at=timezone.now())
    admin_a.is_active = False
    admin_a.save()
    _, short = personal_token_create(user=operator_a, name="read-only", scopes=["read"], expires_in_days=7)
    for plain in (live, old, short):
        fast = sql.personal_token_by_hash.plain(hash_token(plain))
        orm = sql.personal_token_by_hash.portable(hash_token(plain))
        assert fast is not None and orm is not None
        assert (fast.pk, fast.user_id, fast.revoked_at, fast.last_used_at) == (
            orm.pk, orm.user_id, orm.revoked_at, orm.last_used_at,
        )  # fmt: skip
        assert (fast.expires_at, fast.scopes, fast.scope_list) == (orm.expires_at, orm.scopes, orm.scope_list)
        assert (fast.user.pk, fast.user.username, fast.user.is_active) == (
            orm.user.pk, orm.user.username, orm.user.is_active,
        )  # fmt: skip
    inactive = sql.personal_token_by_hash.plain(hash_token(old))
    assert inactive is not None and inactive.user.is_active is False
    missing = hash_token("l10p_" + "x" * 40)
    assert sql.personal_token_by_hash.plain(missing) is None and sql.personal_token_by_hash.portable(missing) is None
