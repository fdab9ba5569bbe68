"""Records that senders may send twice (a retried batch): each may carry a sender-given
``uid``, unique per tenant, and a record whose ``uid`` is stored is skipped."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, TypeVar
from uuid import UUID

from django.db import IntegrityError, transaction
from django.db.models import Model

M = TypeVar("M", bound=Model)


def values(record: object, *, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """A dataclass record's fields by name (not copied), for a model of the same fields."""
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record) if f.name not in leave_out}  # type: ignore[arg-type]


def insert_new(model: type[M], tenant_id: int, rows: Sequence[M]) -> tuple[list[M], int]:
    """Insert the rows whose ``uid`` is new (or unset); returns (the rows inserted, the
    number skipped). ``model`` has ``tenant`` and ``uid`` fields, unique together."""
    uids = {row.uid for row in rows if row.uid is not None}  # type: ignore[attr-defined]
    seen: set[UUID] = set()
    if uids:
        stored = model._default_manager.filter(tenant_id=tenant_id, uid__in=uids).values_list("uid", flat=True)
        seen = {uid for uid in stored if uid is not None}
    fresh: list[M] = []
    duplicates = 0
    for row in rows:
        uid: Any = row.uid  # type: ignore[attr-defined]
        if uid is not None and uid in seen:
            duplicates += 1
            continue
        if uid is not None:
            seen.add(uid)
        fresh.append(row)
    # The rows get their ids (the live tail links to them). A concurrent retry of the same
    # batch that stored some of them first must not fail the request: then the rows go in
    # again skipping those, without ids.
    try:
        with transaction.atomic():
            model._default_manager.bulk_create(fresh, batch_size=500)
    except IntegrityError:
        for row in fresh:
            row.pk = None  # an earlier slice of the batch was rolled back with the rest
        model._default_manager.bulk_create(fresh, batch_size=500, ignore_conflicts=True)
    return fresh, duplicates
