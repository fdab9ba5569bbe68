"""Usernames in one spelling (tenancy/usernames.py): existing names are normalised, and on
PostgreSQL a unique index refuses two users whose names differ only by case or Unicode
compatibility form. Two existing users that would collide stop the migration with their
names; rename one of them (in the admin or a shell), then migrate again."""

import unicodedata
from collections import defaultdict

from django.db import migrations

INDEX = "auth_user_username_normalized_uniq"


def normalize_username(value):
    # Frozen here: a migration must not change when tenancy/usernames.py does.
    folded = unicodedata.normalize("NFKC", value).casefold()
    return unicodedata.normalize("NFKC", folded).strip()


def normalize(apps, schema_editor):
    User = apps.get_model("auth", "User")
    by_name = defaultdict(list)
    for pk, username in User.objects.using(schema_editor.connection.alias).values_list("pk", "username"):
        by_name[normalize_username(username)].append((pk, username))
    clashes = {name: users for name, users in by_name.items() if len(users) > 1}
    if clashes:
        listed = "; ".join(
            " and ".join(f"{username!r} (id {pk})" for pk, username in users) + f" are all {name!r}"
            for name, users in sorted(clashes.items())
        )
        raise RuntimeError(
            f"Usernames must differ by more than case or Unicode form: {listed}. "
            "Rename all but one of each, then run the migration again."
        )
    for name, [(pk, username)] in by_name.items():
        if username != name:
            User.objects.using(schema_editor.connection.alias).filter(pk=pk).update(username=name)
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            f"CREATE UNIQUE INDEX {INDEX} ON auth_user (lower(normalize(username, NFKC)))", params=None
        )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}", params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("tenancy", "0005_token_scopes_expiry"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]
    operations = [migrations.RunPython(normalize, drop_index)]
