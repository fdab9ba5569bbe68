"""One spelling per username (tenancy/usernames.py): stored normalised, unique under
normalisation (the admin says so, PostgreSQL's index enforces it), existing names
normalised by the migration, which stops on a collision."""

from __future__ import annotations

from importlib import import_module
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction

from tests.conftest import client_for
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

migration = import_module("tenancy.migrations.0006_normalized_usernames")


def test_a_username_is_stored_normalised_however_it_is_saved(db):
    user = User.objects.create_user("Ｂｏｂ.Smith", password=PASSWORD)
    assert User.objects.get(pk=user.pk).username == "bob.smith"
    user.username = "STRASSE"
    user.save()
    assert User.objects.get(pk=user.pk).username == "strasse"


def test_the_admin_refuses_a_new_user_that_differs_only_by_spelling(superuser, admin_a):
    client = client_for(superuser)
    response = client.post(
        "/admin/auth/user/add/",
        {
            "username": "ＡＬＩＣＥ",
            "usable_password": "true",
            "password1": "x7-Unusual-pw",
            "password2": "x7-Unusual-pw",
        },
    )
    assert response.status_code == 200
    assert "A user named “alice” already exists" in response.content.decode()
    assert User.objects.filter(username__iexact="alice").count() == 1
    made = client.post(
        "/admin/auth/user/add/",
        {"username": "Carol", "usable_password": "true", "password1": "x7-Unusual-pw", "password2": "x7-Unusual-pw"},
    )
    assert made.status_code == 302
    assert User.objects.filter(username="carol").exists()


def test_the_admin_refuses_renaming_a_user_to_anothers_name(superuser, admin_a, operator_a):
    page = client_for(superuser).get(f"/admin/auth/user/{operator_a.pk}/change/")
    form = page.context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and not isinstance(v, list | tuple)}
    data.update({"username": "Alice", "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00"})
    response = client_for(superuser).post(f"/admin/auth/user/{operator_a.pk}/change/", data)
    assert "A user named “alice” already exists" in response.content.decode()
    operator_a.refresh_from_db()
    assert operator_a.username == "oscar"


@pytest.mark.postgres
def test_postgresql_refuses_two_spellings_even_past_the_model(admin_a):
    other = UserFactory.create(username="mallory")
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.filter(pk=other.pk).update(username="ＡＬＩＣＥ")  # no save(), no normalising
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.bulk_create([User(username="Alice")])


def execute(sql: str, params: object = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql)


@pytest.fixture
def before_migration(db: None) -> None:
    """The database as it was before the migration: on PostgreSQL, without its index
    (dropped in the test's transaction, so it comes back afterwards)."""
    if connection.vendor == "postgresql":
        execute(f"DROP INDEX {migration.INDEX}")


def run_migration() -> None:
    migration.normalize(apps, SimpleNamespace(connection=connection, execute=execute))


def test_the_migration_normalises_existing_names(before_migration):
    User.objects.bulk_create([User(username="Ｄａｖｅ"), User(username="Erin"), User(username="frank")])
    run_migration()
    assert sorted(User.objects.values_list("username", flat=True)) == ["dave", "erin", "frank"]


def test_the_migration_stops_on_names_that_would_collide_and_says_which(before_migration):
    User.objects.bulk_create([User(username="Grace"), User(username="ｇｒａｃｅ"), User(username="heidi")])
    with pytest.raises(RuntimeError) as caught:
        run_migration()
    message = str(caught.value)
    assert "'Grace'" in message and "'ｇｒａｃｅ'" in message and "'grace'" in message
    assert "heidi" not in message
    assert sorted(User.objects.values_list("username", flat=True)) == ["Grace", "heidi", "ｇｒａｃｅ"]
