"""The members page of a tenant: its admins add people, change roles and remove members.
Every answer says what happened; a refused change keeps what was typed and says why."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from audit.services import request_actor
from core.errors import InterfaceError
from core.http import ConsoleRequest
from members import services
from tenancy.decorators import tenant_view
from tenancy.models import Membership, Role


def _page(request: ConsoleRequest, membership: Membership, status: int = 200, **context: object) -> HttpResponse:
    members = (
        Membership.objects.filter(tenant=membership.tenant).select_related("user").order_by("user__username", "pk")
    )
    admins = [m.user_id for m in members if m.role == Role.ADMIN]
    # A refusal about a listed member is said on its row; about anyone else, above the list.
    row_listed = any(m.user_id == context.get("row") for m in members)
    last_admin = admins[0] if len(admins) == 1 else None  # whose Remove… is disabled
    context = {"members": members, "last_admin": last_admin, "roles": Role.choices, "row_listed": row_listed, **context}
    return render(request, "members/members.html", context, status=status)


@require_GET
@tenant_view(need=Role.ADMIN)
def members(request: ConsoleRequest, membership: Membership) -> HttpResponse:
    return _page(request, membership)


@require_POST
@tenant_view(need=Role.ADMIN)
def member_add(request: ConsoleRequest, membership: Membership) -> HttpResponse:
    username, role = request.POST.get("username", ""), request.POST.get("role", Role.VIEWER)
    try:
        added = services.member_add(
            tenant=membership.tenant, username=username, role=role, actor=request_actor(request)
        )
    except InterfaceError as exc:
        error = f"{exc.message} ({exc.code})"
        return _page(request, membership, status=exc.http_status, add_error=error, username=username[:150], role=role)
    messages.success(request, f"{added.user.get_username()} was added as {added.get_role_display().lower()}.")
    return redirect("members:list", membership.tenant.slug)


@require_POST
@tenant_view(need=Role.ADMIN)
def member_role(request: ConsoleRequest, membership: Membership, user_id: int) -> HttpResponse:
    try:
        changed = services.member_role_set(
            tenant=membership.tenant, user_id=user_id, role=request.POST.get("role", ""), actor=request_actor(request)
        )
    except InterfaceError as exc:
        return _page(request, membership, status=exc.http_status, row_error=f"{exc.message} ({exc.code})", row=user_id)
    messages.success(request, f"{changed.user.get_username()}'s role is {changed.get_role_display().lower()}.")
    return redirect("members:list", membership.tenant.slug)


@require_POST
@tenant_view(need=Role.ADMIN)
def member_remove(request: ConsoleRequest, membership: Membership, user_id: int) -> HttpResponse:
    try:
        services.member_remove(tenant=membership.tenant, user_id=user_id, actor=request_actor(request))
    except InterfaceError as exc:
        return _page(request, membership, status=exc.http_status, row_error=f"{exc.message} ({exc.code})", row=user_id)
    if user_id == request.user.pk:  # an admin who left: nothing of this tenant is theirs any more
        messages.success(request, f"You left {membership.tenant.name}.")
        return redirect("home")
    messages.success(request, "The member was removed; their open pages of this tenant close now.")
    return redirect("members:list", membership.tenant.slug)
