"""Plain statements of the tenancy domain (core/sql.py says how, docs/architecture.md why).

Every ingest and control request starts by authenticating its token: reading the token
with its owner (a tenant, or a person) is one statement, not an ORM query compiled per
request. Every signed-in page starts with three reads, each a statement here: its
session, its user and the user's memberships (compiling them through the ORM cost 1.5 ms
of CPU per page, three times the statements' own cost; docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar

from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.db.models import Model

from core.sql import fetch_all, fetch_one, load, plain, table
from tenancy.models import ApiToken, Membership, PersonalToken, Tenant

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


# --- a signed-in request ------------------------------------------------------------------

SESSION_FIELDS = ("session_key", "session_data", "expire_date")
SESSION_SQL = (
    f"SELECT {', '.join(SESSION_FIELDS)} FROM {table(Session)} "  # noqa: S608 - constants only
    "WHERE session_key = %s AND expire_date > %s"
)


def _session_by_key_portable(key: str, now: datetime) -> Session | None:
    return Session.objects.filter(session_key=key, expire_date__gt=now).first()


@plain(portable=_session_by_key_portable)
def session_by_key(key: str, now: datetime) -> Session | None:
    """The session of ``key`` if it has not expired by ``now``."""
    row = fetch_one(SESSION_SQL, [key, now])
    return None if row is None else load(Session, SESSION_FIELDS, row)


# Every column of the user: the session's check reads the password hash.
USER_ALL_FIELDS = tuple(f.attname for f in User._meta.concrete_fields)
USER_SQL = f"SELECT {', '.join(USER_ALL_FIELDS)} FROM {table(User)} WHERE id = %s"  # noqa: S608 - constants only


def _user_by_id_portable(user_id: int) -> User | None:
    return User.objects.filter(pk=user_id).first()


@plain(portable=_user_by_id_portable)
def user_by_id(user_id: int) -> User | None:
    row = fetch_one(USER_SQL, [user_id])
    return None if row is None else load(User, USER_ALL_FIELDS, row)


MEMBERSHIP_FIELDS = tuple(f.attname for f in Membership._meta.concrete_fields)
TENANT_ALL_FIELDS = tuple(f.attname for f in Tenant._meta.concrete_fields)
MEMBERSHIPS_SQL = (
    f"SELECT {', '.join(f'm.{c}' for c in MEMBERSHIP_FIELDS)}, {', '.join(f't.{c}' for c in TENANT_ALL_FIELDS)} "  # noqa: S608
    f"FROM {table(Membership)} AS m JOIN {table(Tenant)} AS t ON t.id = m.tenant_id "
    "WHERE m.user_id = %s ORDER BY t.name, m.id"
)


def _memberships_of_portable(user_id: int) -> list[Membership]:
    return list(Membership.objects.select_related("tenant").filter(user_id=user_id).order_by("tenant__name", "pk"))


@plain(portable=_memberships_of_portable)
def memberships_of(user_id: int) -> list[Membership]:
    """A person's memberships, each with its tenant, by the tenant's name."""
    width = len(MEMBERSHIP_FIELDS)
    found = []
    for row in fetch_all(MEMBERSHIPS_SQL, [user_id]):
        membership = load(Membership, MEMBERSHIP_FIELDS, row[:width])
        membership.tenant = load(Tenant, TENANT_ALL_FIELDS, row[width:])
        found.append(membership)
    return found
