"""``tenant_view``: resolve ``<slug>`` to the user's membership before the view runs."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, Concatenate, ParamSpec

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponseBase

from tenancy.access import choose_membership, memberships_of
from tenancy.models import Membership, Role

P = ParamSpec("P")
# The view may annotate its request as ConsoleRequest (htmx, a logged-in user).
View = Callable[Concatenate[Any, Membership, P], HttpResponseBase]
LAST_TENANT_SESSION_KEY = "l10_tenant"


def tenant_view(
    need: Role = Role.VIEWER,
) -> Callable[[View[P]], Callable[..., HttpResponseBase]]:
    """Log-in required; 404 outside the tenant, 403 below ``need``. The view gets the membership."""

    def decorate(view: View[P]) -> Callable[..., HttpResponseBase]:
        @login_required
        @wraps(view)
        def wrapper(request: HttpRequest, slug: str, *args: Any, **kwargs: Any) -> HttpResponseBase:
            # One query serves both the check and the header's tenant switcher.
            memberships = memberships_of(request.user)
            membership = choose_membership(memberships, slug, need=need)
            request.memberships = memberships  # type: ignore[attr-defined]
            request.membership = membership  # type: ignore[attr-defined]
            if request.session.get(LAST_TENANT_SESSION_KEY) != slug:
                request.session[LAST_TENANT_SESSION_KEY] = slug
            return view(request, membership, *args, **kwargs)

        return wrapper

    return decorate
