"""Plain statements of the tenancy domain (core/sql.py says how, docs/architecture.md why).

Every ingest and control request starts by authenticating its token: reading the token
with its tenant (or its user) is one statement, not an ORM query compiled per request.
"""

from __future__ import annotations

from django.contrib.auth.models import User

from core.sql import fetch_one, load, plain, table
from tenancy.models import ApiToken, PersonalToken, Tenant

API_TOKEN_FIELDS = ("id", "tenant_id", "revoked_at", "last_used_at")
TENANT_FIELDS = ("id", "slug", "name", "created_at")
API_TOKEN_SQL = (
    "SELECT k.id, k.tenant_id, k.revoked_at, k.last_used_at, t.id, t.slug, t.name, t.created_at "  # noqa: S608
    f"FROM {table(ApiToken)} AS k JOIN {table(Tenant)} AS t ON t.id = k.tenant_id WHERE k.token_hash = %s"
)


def _api_token_by_hash_portable(digest: str) -> ApiToken | None:
    return ApiToken.objects.select_related("tenant").filter(token_hash=digest).first()


@plain(portable=_api_token_by_hash_portable)
def api_token_by_hash(digest: str) -> ApiToken | None:
    """A tenant API token by its hash, with its tenant."""
    row = fetch_one(API_TOKEN_SQL, [digest])
    if row is None:
        return None
    token = load(ApiToken, API_TOKEN_FIELDS, row[:4])
    token.tenant = load(Tenant, TENANT_FIELDS, row[4:])
    return token


PERSONAL_TOKEN_FIELDS = ("id", "user_id", "revoked_at", "last_used_at")
USER_FIELDS = ("id", "username", "is_active")
PERSONAL_TOKEN_SQL = (
    "SELECT k.id, k.user_id, k.revoked_at, k.last_used_at, u.id, u.username, u.is_active "  # noqa: S608
    f"FROM {table(PersonalToken)} AS k JOIN {table(User)} AS u ON u.id = k.user_id WHERE k.token_hash = %s"
)


def _personal_token_by_hash_portable(digest: str) -> PersonalToken | None:
    return PersonalToken.objects.select_related("user").filter(token_hash=digest).first()


@plain(portable=_personal_token_by_hash_portable)
def personal_token_by_hash(digest: str) -> PersonalToken | None:
    """A personal token by its hash, with what a request needs of its user (id, username,
    is_active)."""
    row = fetch_one(PERSONAL_TOKEN_SQL, [digest])
    if row is None:
        return None
    token = load(PersonalToken, PERSONAL_TOKEN_FIELDS, row[:4])
    token.user = load(User, USER_FIELDS, row[4:])
    return token
