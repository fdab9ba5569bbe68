"""Plain statements of the tenancy domain (core/sql.py says how, docs/architecture.md why).

Every ingest and control request starts by authenticating its token: reading the token
with its owner (a tenant, or a person) is one statement, not an ORM query compiled per
request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from django.contrib.auth.models import User
from django.db.models import Model

from core.sql import fetch_one, load, plain, table
from tenancy.models import ApiToken, PersonalToken, Tenant

T = TypeVar("T", ApiToken, PersonalToken)

TOKEN_FIELDS = ("id", "revoked_at", "last_used_at", "expires_at", "scopes")
TENANT_FIELDS = ("id", "slug", "name", "created_at")
USER_FIELDS = ("id", "username", "is_active")


def _statement(token: type[Model], owner: type[Model], owner_column: str, owner_fields: Sequence[str]) -> str:
    columns = [f"k.{f}" for f in (*TOKEN_FIELDS, owner_column)] + [f"o.{f}" for f in owner_fields]
    return (
        f"SELECT {', '.join(columns)} FROM {table(token)} AS k "  # noqa: S608 - constants only
        f"JOIN {table(owner)} AS o ON o.id = k.{owner_column} WHERE k.token_hash = %s"
    )


API_TOKEN_SQL = _statement(ApiToken, Tenant, "tenant_id", TENANT_FIELDS)
PERSONAL_TOKEN_SQL = _statement(PersonalToken, User, "user_id", USER_FIELDS)


def _token_with_owner(
    sql: str, token: type[T], owner: type[Model], owner_column: str, owner_fields: Sequence[str], digest: str
) -> T | None:
    """The token of ``digest`` with its owner loaded, as ``select_related`` would."""
    row = fetch_one(sql, [digest])
    if row is None:
        return None
    width = len(TOKEN_FIELDS) + 1
    found = load(token, (*TOKEN_FIELDS, owner_column), row[:width])
    setattr(found, owner_column.removesuffix("_id"), load(owner, owner_fields, row[width:]))
    return found


def _api_token_by_hash_portable(digest: str) -> ApiToken | None:
    return ApiToken.objects.select_related("tenant").filter(token_hash=digest).first()


@plain(portable=_api_token_by_hash_portable)
def api_token_by_hash(digest: str) -> ApiToken | None:
    """A tenant API token by its hash, with its tenant."""
    return _token_with_owner(API_TOKEN_SQL, ApiToken, Tenant, "tenant_id", TENANT_FIELDS, digest)


def _personal_token_by_hash_portable(digest: str) -> PersonalToken | None:
    return PersonalToken.objects.select_related("user").filter(token_hash=digest).first()


@plain(portable=_personal_token_by_hash_portable)
def personal_token_by_hash(digest: str) -> PersonalToken | None:
    """A personal token by its hash, with what a request needs of its user (id, username,
    is_active)."""
    return _token_with_owner(PERSONAL_TOKEN_SQL, PersonalToken, User, "user_id", USER_FIELDS, digest)
