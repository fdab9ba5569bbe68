"""Tenancy's plain statements against their portable twins, on the same PostgreSQL data."""

from __future__ import annotations

from datetime import timedelta

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


@parity(sql.session_by_key)
def test_both_session_reads_find_the_same_live_session(client, viewer_a):
    client.force_login(viewer_a)
    key = client.session.session_key
    now = timezone.now()
    fast, orm = sql.session_by_key.plain(key, now), sql.session_by_key.portable(key, now)
    assert fast is not None and orm is not None
    assert (fast.session_key, fast.session_data, fast.expire_date) == (
        orm.session_key,
        orm.session_data,
        orm.expire_date,
    )
    assert fast.get_decoded()["_auth_user_id"] == str(viewer_a.pk)
    # Past its expiry, and an unknown key: neither path finds one.
    later = fast.expire_date + timedelta(seconds=1)
    assert sql.session_by_key.plain(key, later) is None and sql.session_by_key.portable(key, later) is None
    assert sql.session_by_key.plain("x" * 32, now) is None and sql.session_by_key.portable("x" * 32, now) is None


@parity(sql.user_by_id)
def test_both_user_reads_load_every_column(viewer_a, admin_a):
    admin_a.is_active = False
    admin_a.save()
    for user in (viewer_a, admin_a):
        fast, orm = sql.user_by_id.plain(user.pk), sql.user_by_id.portable(user.pk)
        assert fast is not None and orm is not None
        fields = [f.attname for f in type(orm)._meta.concrete_fields]
        assert [getattr(fast, f) for f in fields] == [getattr(orm, f) for f in fields]
        assert fast.get_session_auth_hash() == orm.get_session_auth_hash()
    assert sql.user_by_id.plain(10**9) is None and sql.user_by_id.portable(10**9) is None


@parity(sql.memberships_of)
def test_both_membership_reads_list_the_same_tenants_in_the_same_order(admin_a, viewer_a, tenant_a, tenant_b):
    from tenancy.models import Membership, Role, Tenant

    zeta = Tenant.objects.create(slug="zeta", name="Aardvark Labs")  # first by name, last by slug
    Membership.objects.create(user=admin_a, tenant=zeta, role=Role.OPERATOR)
    Membership.objects.create(user=admin_a, tenant=tenant_b, role=Role.VIEWER)
    for user in (admin_a, viewer_a):
        fast, orm = sql.memberships_of.plain(user.pk), sql.memberships_of.portable(user.pk)
        assert [(m.pk, m.user_id, m.tenant_id, m.role, m.created_at) for m in fast] == [
            (m.pk, m.user_id, m.tenant_id, m.role, m.created_at) for m in orm
        ]
        assert [(m.tenant.slug, m.tenant.name, m.tenant.created_at) for m in fast] == [
            (m.tenant.slug, m.tenant.name, m.tenant.created_at) for m in orm
        ]
    assert [m.tenant.slug for m in sql.memberships_of.plain(admin_a.pk)] == ["zeta", "acme", "globex"]
    assert sql.memberships_of.plain(10**9) == []
