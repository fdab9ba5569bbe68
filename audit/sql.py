"""The audit trail's one plain statement (core/sql.py says how, docs/architecture.md why):
every control operation writes a row, and compiling the ORM's INSERT cost more than
running it; it is prepared once per connection (docs/performance.md, "The audit trail")."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from audit.models import AuditEntry
from core.sql import fetch_prepared, plain, table

FIELDS = (
    "tenant_id",
    "occurred_at",
    "actor_id",
    "actor_label",
    "ip",
    "user_agent",
    "action",
    "resource_type",
    "resource_id",
    "reason",
    "delta",
    "outcome",
    "error_code",
    "idempotency_key",
    "request_id",
    "batch_id",
)
INSERT_SQL = (
    f"INSERT INTO {table(AuditEntry)} ({', '.join(FIELDS)}) "  # noqa: S608 - constants only
    f"VALUES ({', '.join(['%s'] * len(FIELDS))}) RETURNING id"
)


def _insert_portable(values: dict[str, Any]) -> int:
    return int(AuditEntry.objects.create(**values).pk)


@plain(portable=_insert_portable)
def insert(values: dict[str, Any]) -> int:
    """One audit row in the caller's transaction; ``values`` has every one of ``FIELDS``.
    Its id."""
    # The values as the columns take them: only the change needs adapting (to jsonb), and
    # doing it here costs a tenth of the fields' own preparation (core.sql.prep).
    params = [Jsonb(values[f]) if f == "delta" else values[f] for f in FIELDS]
    params[FIELDS.index("ip")] = values["ip"] or None
    row = fetch_prepared(INSERT_SQL, params)
    assert row is not None  # noqa: S101 - INSERT … RETURNING returns the row
    return int(row[0])
