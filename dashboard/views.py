from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from dashboard import selectors
from fleet.models import ObservedState
from l10console.http import ConsoleRequest
from l10console.tenancy.decorators import tenant_view
from l10console.tenancy.models import Membership

PAGE_SIZE = 50


@require_GET
@tenant_view()
def tenant_home(request: ConsoleRequest, membership: Membership) -> HttpResponse:
    return redirect("dashboard:agents", membership.tenant.slug)


@require_GET
@tenant_view()
def agents(request: ConsoleRequest, membership: Membership) -> HttpResponse:
    state = request.GET.get("state") or None
    name = (request.GET.get("q") or "").strip()[:200] or None
    page = Paginator(selectors.agents_for_list(membership.tenant, state=state, name=name), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    context = {"page": page, "state": state, "q": name or "", "states": ObservedState.choices}
    template = "dashboard/_agent_rows.html" if request.htmx else "dashboard/agents.html"
    return render(request, template, context)
