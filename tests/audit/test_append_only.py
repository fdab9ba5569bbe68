"""The audit trail is append-only on PostgreSQL: no UPDATE, no DELETE, no TRUNCATE."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError
from django.utils import timezone

from audit.models import AuditEntry, Outcome

# Committed rows: TRUNCATE in the transaction that inserted them fails for another reason
# (their deferred foreign-key checks are pending).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


@pytest.fixture
def entry(tenant_a, operator_a) -> AuditEntry:
    return AuditEntry.objects.create(
        tenant=tenant_a,
        occurred_at=timezone.now(),
        actor=operator_a,
        actor_label="oscar",
        action="agent.pause",
        resource_type="agent",
        resource_id="worker-1",
        outcome=Outcome.SUCCESS,
    )


def refused(statement: str) -> str:
    """Run ``statement`` as the console's sessions do (no truncate allowance); the error."""
    with pytest.raises(DatabaseError) as caught, transaction.atomic(), connection.cursor() as cursor:
        # The suite's connections may empty tables between tests; the console's may not.
        cursor.execute("SET LOCAL l10.audit_truncate = ''")
        cursor.execute(statement)
    return str(caught.value)


def test_truncating_the_audit_trail_is_refused(entry):
    # Alone, the seals and the pending list that refer to the entries stop it first.
    assert "cannot truncate a table referenced in a foreign key" in refused("TRUNCATE audit_auditentry")
    assert "TRUNCATE is not allowed" in refused("TRUNCATE audit_auditentry CASCADE")
    assert "TRUNCATE is not allowed" in refused("TRUNCATE audit_auditentry, audit_auditseal, audit_auditpending")
    assert list(AuditEntry.objects.values_list("pk", flat=True)) == [entry.pk]


def test_updating_or_deleting_an_entry_is_still_refused(entry):
    assert "append-only" in refused("UPDATE audit_auditentry SET reason = 'rewritten'")
    assert "append-only" in refused("DELETE FROM audit_auditentry")
    assert AuditEntry.objects.get().reason == ""
