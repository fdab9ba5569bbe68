from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from tenancy.access import memberships_of
from tenancy.models import Role


def tenancy(request: HttpRequest) -> dict[str, Any]:
    """The tenant switcher's list and the current membership, for the header."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "memberships": getattr(request, "memberships", None) or memberships_of(user),
        "current": getattr(request, "membership", None),
        "Role": Role,
    }
