"""The audit trail's plain INSERT against the ORM's, on the same PostgreSQL data."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from audit import sql
from audit.models import AuditEntry
from tests.parity import parity

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@parity(sql.insert)
def test_both_audit_inserts_write_the_same_row(tenant_a, operator_a):
    values = {
        "tenant_id": tenant_a.pk,
        "occurred_at": datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
        "actor_id": operator_a.pk,
        "actor_label": "oscar",
        "ip": "10.1.2.3",
        "user_agent": "tests",
        "action": "agent.pause",
        "resource_type": "agent",
        "resource_id": "worker-1",
        "reason": "maintenance",
        "delta": {"desired_state": {"from": "running", "to": "paused"}},
        "outcome": "success",
        "error_code": "",
        "idempotency_key": "k-1",
        "request_id": "r-1",
        "batch_id": uuid.UUID("0b0e2d4c-8f65-4a43-9e4f-0d6ab1f0a0a0"),
    }
    bare = {**values, "actor_id": None, "ip": None, "delta": {}, "batch_id": None}
    ids = []
    for statement in (sql.insert.plain, sql.insert.portable):
        ids += [statement(values), statement(bare)]
    rows = list(AuditEntry.objects.order_by("id").values("id", *sql.FIELDS))
    assert rows == [{"id": pk, **row} for pk, row in zip(ids, [values, bare, values, bare], strict=True)]
