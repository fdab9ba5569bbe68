"""Plain statements of the event store (PostgreSQL), each beside its portable twin
(core/sql.py; parity in tests/events/test_sql.py)."""

from __future__ import annotations

from core.sql import fetch_all, plain
from events.models import Event

# The types a tenant's events have, one index probe per type (a "skip scan" on the index
# (tenant, type, occurred_at)), not a pass over every event: a few milliseconds at
# millions of events where ``DISTINCT`` reads them all.
TYPES_SQL = """
WITH RECURSIVE found(type, n) AS (
    (SELECT type, 1 FROM events_event WHERE tenant_id = %(tenant)s ORDER BY type LIMIT 1)
    UNION ALL
    SELECT (SELECT e.type FROM events_event e WHERE e.tenant_id = %(tenant)s AND e.type > found.type
            ORDER BY e.type LIMIT 1), found.n + 1
    FROM found WHERE found.type IS NOT NULL AND found.n < %(most)s
)
SELECT type FROM found WHERE type IS NOT NULL
"""


def _types_portable(tenant_id: int, most: int) -> list[str]:
    found = Event.objects.filter(tenant_id=tenant_id).values_list("type", flat=True).distinct().order_by("type")
    return list(found[:most])


@plain(portable=_types_portable)
def types(tenant_id: int, most: int) -> list[str]:
    """The first ``most`` event types of the tenant's events, in order."""
    return [row[0] for row in fetch_all(TYPES_SQL, {"tenant": tenant_id, "most": most})]
