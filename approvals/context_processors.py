"""The header's count of pending approval requests on a tenant page without a live
socket (``approvals.selectors.pending_count``). A live page gets it from its socket
instead (dashboard/live.py), as the alert badge."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from approvals.selectors import pending_count


def approvals(request: HttpRequest) -> dict[str, object]:
    membership = getattr(request, "membership", None)
    if membership is None:
        return {}
    return {"approval_count": SimpleLazyObject(lambda: pending_count(membership.tenant_id))}
