"""On PostgreSQL the audit trail cannot be emptied either. TRUNCATE fires no row trigger,
so a statement-level trigger refuses it (0002 refuses UPDATE and DELETE).

The one exception is a session that sets ``l10.audit_truncate = 'allow'``: the test
suite's connections do, because Django empties every table with TRUNCATE between
transactional tests (docs/operations.md, "The audit trail"). The console never sets it.
"""

from django.db import migrations

FORBID = """
CREATE OR REPLACE FUNCTION audit_entry_no_truncate() RETURNS trigger AS $$
BEGIN
    IF current_setting('l10.audit_truncate', true) = 'allow' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'the audit trail is append-only: TRUNCATE is not allowed';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_entry_no_truncate BEFORE TRUNCATE ON audit_auditentry
    FOR EACH STATEMENT EXECUTE FUNCTION audit_entry_no_truncate();
"""
ALLOW = """
DROP TRIGGER IF EXISTS audit_entry_no_truncate ON audit_auditentry;
DROP FUNCTION IF EXISTS audit_entry_no_truncate();
"""


def forbid(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORBID, params=None)


def allow(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(ALLOW, params=None)


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only")]
    operations = [migrations.RunPython(forbid, allow)]
