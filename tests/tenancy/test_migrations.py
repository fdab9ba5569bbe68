"""Tokens and people from before scopes and normalised usernames, carried through
tenancy's migrations 0005 and 0006 on the real database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from core.tokens import new_token
from tenancy.models import Scope
from tenancy.services import personal_token_authenticate, token_authenticate

BEFORE = [("tenancy", "0004_apitoken_table")]
AFTER = [("tenancy", "0006_normalized_usernames")]


@pytest.fixture
def before_scopes(transactional_db: None) -> Iterator[MigrationExecutor]:
    """The database as it was at tenancy 0004; migrated forward again afterwards."""
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    yield executor
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_tokens_and_people_from_before_keep_working_after_the_migrations(before_scopes):
    old = before_scopes.loader.project_state(BEFORE).apps
    tenant = old.get_model("tenancy", "Tenant").objects.create(slug="acme", name="Acme")
    person = old.get_model("auth", "User").objects.create(username="Ｉｖａｎ")
    tenant_token, personal_token = new_token(), new_token("l10p")
    old.get_model("tenancy", "ApiToken").objects.create(
        tenant=tenant, name="fleet", prefix=tenant_token.prefix, token_hash=tenant_token.digest
    )
    old.get_model("tenancy", "PersonalToken").objects.create(
        user=person, name="cli", prefix=personal_token.prefix, token_hash=personal_token.digest
    )

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)

    found = token_authenticate(tenant_token.plain, scope=Scope.INGEST)
    assert (found.scopes, found.expires_at) == ("ingest read", None)
    assert token_authenticate(tenant_token.plain, scope=Scope.READ).pk == found.pk
    mine = personal_token_authenticate(personal_token.plain, scope=Scope.CONTROL)
    assert (mine.scopes, mine.expires_at) == ("control read", None)
    assert mine.user.username == "ivan"
