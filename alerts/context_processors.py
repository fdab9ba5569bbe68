"""The header's alert badge on a tenant page without a live socket: the firing alerts
nobody has acknowledged or snoozed (``alerts.selectors.badge_count``). A live page gets it
from its socket instead (dashboard/live.py), so its cached HTML costs no count."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from alerts.selectors import badge_count


def alerts(request: HttpRequest) -> dict[str, object]:
    membership = getattr(request, "membership", None)
    if membership is None:
        return {}
    return {"alert_count": SimpleLazyObject(lambda: badge_count(membership.tenant_id))}
