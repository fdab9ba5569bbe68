"""The cost rollups' rebuilds as plain statements (core/sql.py): on PostgreSQL one
``DELETE`` and one ``INSERT … SELECT … GROUP BY`` per table, where making the rows as
objects costs five times as long (docs/performance.md, "Costs"); the portable twins do the
same through the ORM.

- ``rebuild_hour``: a tenant's hour rows (``CostHour``, per agent and model) made again
  from its usage records, then its by-model rows (``CostModelHour``) from those.
- ``rebuild_day``: a tenant's day rows (``CostAgentDay``, per agent) made again from the
  day's hour rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Count, DecimalField, Q, Sum, Value
from django.db.models.functions import Coalesce

from core import money
from core.sql import execute, plain
from costs.models import CostAgentDay, CostHour, CostModelHour, UsageRecord

MONEY = DecimalField(max_digits=money.MAX_DIGITS, decimal_places=money.PLACES)


def _summed(counted: bool) -> dict[str, Any]:
    """The aggregate of a group: from records (``counted``: each one a record) or from rows
    that already hold sums."""
    if counted:
        return {
            "n": Count("pk"), "inp": Sum("input_tokens"), "out": Sum("output_tokens"),
            "cached": Sum("cached_input_tokens"), "calls": Sum("api_calls"),
            "cost": Coalesce(Sum("cost_usd"), Value(Decimal(0)), output_field=MONEY),
            "unpriced": Count("pk", filter=Q(cost_usd__isnull=True)),
        }  # fmt: skip
    return {
        "n": Sum("records"), "inp": Sum("input_tokens"), "out": Sum("output_tokens"),
        "cached": Sum("cached_input_tokens"), "calls": Sum("api_calls"), "cost": Sum("cost_usd"),
        "unpriced": Sum("unpriced_records"),
    }  # fmt: skip


def _figures(s: Any) -> dict[str, Any]:
    return {
        "records": s["n"], "input_tokens": s["inp"], "output_tokens": s["out"], "cached_input_tokens": s["cached"],
        "api_calls": s["calls"], "cost_usd": s["cost"], "unpriced_records": s["unpriced"],
    }  # fmt: skip


def _rebuild_hour_portable(tenant_id: int, hour: datetime) -> int:
    end = hour + timedelta(hours=1)
    groups = (
        UsageRecord.objects.filter(tenant_id=tenant_id, occurred_at__gte=hour, occurred_at__lt=end)
        .values("agent_id", "model")
        .annotate(**_summed(True))
        .order_by()
    )
    rows = [
        CostHour(tenant_id=tenant_id, agent_id=s["agent_id"], model=s["model"], hour=hour, **_figures(s))
        for s in groups
    ]
    by_model: dict[str, CostModelHour] = {}
    for row in rows:
        into = by_model.setdefault(row.model, CostModelHour(tenant_id=tenant_id, model=row.model, hour=hour))
        for field in ("records", "input_tokens", "output_tokens", "cached_input_tokens", "api_calls",
                      "unpriced_records"):  # fmt: skip
            setattr(into, field, getattr(into, field) + getattr(row, field))
        into.cost_usd = Decimal(into.cost_usd) + Decimal(row.cost_usd)
    with transaction.atomic():
        CostHour.objects.filter(tenant_id=tenant_id, hour=hour).delete()
        CostHour.objects.bulk_create(rows, batch_size=1000)
        CostModelHour.objects.filter(tenant_id=tenant_id, hour=hour).delete()
        CostModelHour.objects.bulk_create(by_model.values())
    return len(rows)


HOUR_SQL = """
INSERT INTO costs_costhour (tenant_id, agent_id, model, hour, records, input_tokens, output_tokens, cached_input_tokens, api_calls, cost_usd, unpriced_records)
SELECT tenant_id, agent_id, model, %(hour)s, count(*), sum(input_tokens), sum(output_tokens),
       sum(cached_input_tokens), sum(api_calls), coalesce(sum(cost_usd), 0),
       count(*) FILTER (WHERE cost_usd IS NULL)
  FROM costs_usagerecord
 WHERE tenant_id = %(tenant)s AND occurred_at >= %(hour)s AND occurred_at < %(end)s
 GROUP BY tenant_id, agent_id, model
"""
MODEL_HOUR_SQL = """
INSERT INTO costs_costmodelhour (tenant_id, model, hour, records, input_tokens, output_tokens, cached_input_tokens, api_calls, cost_usd, unpriced_records)
SELECT tenant_id, model, hour, sum(records), sum(input_tokens), sum(output_tokens), sum(cached_input_tokens),
       sum(api_calls), sum(cost_usd), sum(unpriced_records)
  FROM costs_costhour
 WHERE tenant_id = %(tenant)s AND hour = %(hour)s
 GROUP BY tenant_id, model, hour
"""


@plain(portable=_rebuild_hour_portable)
def rebuild_hour(tenant_id: int, hour: datetime) -> int:
    """The tenant's rows of ``hour`` made again; returns the hour rows written."""
    params = {"tenant": tenant_id, "hour": hour, "end": hour + timedelta(hours=1)}
    with transaction.atomic():
        execute("DELETE FROM costs_costhour WHERE tenant_id = %(tenant)s AND hour = %(hour)s", params)
        written = execute(HOUR_SQL, params)
        execute("DELETE FROM costs_costmodelhour WHERE tenant_id = %(tenant)s AND hour = %(hour)s", params)
        execute(MODEL_HOUR_SQL, params)
    return written


def _rebuild_day_portable(tenant_id: int, day: datetime) -> int:
    groups = (
        CostHour.objects.filter(tenant_id=tenant_id, hour__gte=day, hour__lt=day + timedelta(days=1))
        .values("agent_id")
        .annotate(**_summed(False))
        .order_by()
    )
    rows = [CostAgentDay(tenant_id=tenant_id, agent_id=s["agent_id"], day=day, **_figures(s)) for s in groups]
    with transaction.atomic():
        CostAgentDay.objects.filter(tenant_id=tenant_id, day=day).delete()
        CostAgentDay.objects.bulk_create(rows, batch_size=1000)
    return len(rows)


DAY_SQL = """
INSERT INTO costs_costagentday (tenant_id, agent_id, day, records, input_tokens, output_tokens, cached_input_tokens, api_calls, cost_usd, unpriced_records)
SELECT tenant_id, agent_id, %(day)s, sum(records), sum(input_tokens), sum(output_tokens),
       sum(cached_input_tokens), sum(api_calls), sum(cost_usd), sum(unpriced_records)
  FROM costs_costhour
 WHERE tenant_id = %(tenant)s AND hour >= %(day)s AND hour < %(end)s
 GROUP BY tenant_id, agent_id
"""


@plain(portable=_rebuild_day_portable)
def rebuild_day(tenant_id: int, day: datetime) -> int:
    """The tenant's rows of ``day`` (its midnight, UTC) made again from its hour rows;
    returns the rows written."""
    params = {"tenant": tenant_id, "day": day, "end": day + timedelta(days=1)}
    with transaction.atomic():
        execute("DELETE FROM costs_costagentday WHERE tenant_id = %(tenant)s AND day = %(day)s", params)
        return execute(DAY_SQL, params)
