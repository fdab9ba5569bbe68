"""The audit trail's plain INSERT against the ORM's, on the same PostgreSQL data."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from audit import export, sql
from audit.models import AuditEntry, Outcome
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


@parity(export.page)
def test_both_export_reads_give_the_same_rows(tenant_a, tenant_b, operator_a):
    from audit import chain, selectors
    from audit.services import Actor, Entry, audit_record

    def write(tenant, n: int, **fields) -> int:
        made = {"action": "agent.pause", "resource_type": "agent", "resource_id": "w", "outcome": Outcome.SUCCESS}
        return audit_record(
            tenant_id=tenant.pk, actor=fields.pop("actor", Actor(user=None)), entry=Entry(**{**made, **fields}),
            at=datetime(2026, 11, 30, 12, n, tzinfo=UTC),
        )  # fmt: skip

    first = write(tenant_a, 1, delta={"desired_state": {"from": "running", "to": "paused"}}, reason="r")
    write(tenant_a, 2, action="agent.resume")
    write(tenant_b, 3)
    write(
        tenant_a, 4, actor=Actor(user=operator_a, ip="2001:db8::7"), batch_id=uuid.uuid4(), delta={"n": 0.5, "é": [1]}
    )
    chain.seal()
    write(tenant_a, 5)  # not sealed yet
    for query in (selectors.AuditFilter(), selectors.AuditFilter(action="agent.pause")):
        for after, chunk in ((0, 100), (first, 2)):
            plain_rows = export.page.plain(tenant_a.pk, query, after, chunk)
            portable_rows = export.page.portable(tenant_a.pk, query, after, chunk)
            # The delta is the same JSON, not the same spelling: PostgreSQL writes its own.
            for rows in (plain_rows, portable_rows):
                for row in rows:
                    row[export.DELTA] = json.loads(row[export.DELTA])
            assert plain_rows == portable_rows and plain_rows
