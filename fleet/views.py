"""The tenant's API token settings (admins only)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from fleet import selectors, services
from l10console.http import ConsoleRequest
from l10console.tenancy.decorators import tenant_view
from l10console.tenancy.models import Membership, Role


@require_GET
@tenant_view(need=Role.ADMIN)
def tokens(request: ConsoleRequest, membership: Membership) -> HttpResponse:
    return render(request, "fleet/tokens.html", {"tokens": selectors.tokens_of(membership.tenant)})


@require_POST
@tenant_view(need=Role.ADMIN)
def token_create(request: ConsoleRequest, membership: Membership) -> HttpResponse:
    name = request.POST.get("name", "")
    try:
        token, plain = services.token_create(tenant=membership.tenant, name=name, created_by=request.user)
    except ValueError as exc:
        return render(
            request,
            "fleet/tokens.html",
            {"tokens": selectors.tokens_of(membership.tenant), "error": str(exc), "name": name},
            status=400,
        )
    # Shown once, on this response only; never stored in plain text, not even in the session.
    return render(
        request,
        "fleet/tokens.html",
        {"tokens": selectors.tokens_of(membership.tenant), "new_token": plain, "new_token_name": token.name},
        status=201,
    )


@require_POST
@tenant_view(need=Role.ADMIN)
def token_revoke(request: ConsoleRequest, membership: Membership, token_id: int) -> HttpResponse:
    token = selectors.get_token_for_user(request.user, membership.tenant, token_id)
    if services.token_revoke(token=token):
        messages.success(request, f"Token “{token.name}” is revoked; agents using it can no longer report.")
    else:
        messages.info(request, f"Token “{token.name}” was already revoked.")
    return redirect("fleet:tokens", membership.tenant.slug)
