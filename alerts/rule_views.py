"""The rules page of a tenant: everyone reads the rules; admins add and change them, with
a preview of what a rule would say about the fleet now. A refused rule keeps what was
typed and says which field is wrong and why."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from alerts import evaluation, services
from alerts.models import Aggregation, AlertRule, Comparator, Metric, NoData, NotificationTarget, Severity
from alerts.rules import FIELDS, RuleSpec, rule_spec, target_spec
from audit.services import request_actor
from core.errors import InterfaceError
from core.http import ConsoleRequest
from fleet.models import Agent
from tenancy.decorators import tenant_view
from tenancy.models import Membership, Role

CHOICES = {
    "metrics": Metric.choices, "aggregations": Aggregation.choices, "comparators": Comparator.choices,
    "no_data_choices": NoData.choices, "severities": Severity.choices,
}  # fmt: skip


def _submitted(request: ConsoleRequest) -> dict[str, Any]:
    data: dict[str, Any] = {k: request.POST.get(k, "") for k in FIELDS if k in request.POST}
    data["targets"] = request.POST.getlist("targets")
    data["enabled"] = "on" if request.POST.get("enabled") else ""
    return data


def _values(rule: AlertRule | None) -> dict[str, Any]:
    if rule is None:
        return {"metric": Metric.CPU, "aggregation": "avg", "comparator": "gt", "window_seconds": 300,
                "for_seconds": 0, "min_samples": 1, "no_data": "ok", "severity": "warning", "enabled": "on",
                "scope": "all", "targets": []}  # fmt: skip
    values = {f: getattr(rule, f) for f in FIELDS if hasattr(rule, f)}
    values["agent"] = str(rule.agent_id) if rule.agent_id else ""
    values["scope"] = "agent" if rule.agent_id else "selector" if rule.selector else "all"
    values["enabled"] = "on" if rule.enabled else ""
    values["resolve_threshold"] = "" if rule.resolve_threshold is None else rule.resolve_threshold
    values["targets"] = [str(pk) for pk in rule.targets.values_list("pk", flat=True)]
    return values


def _form(
    request: ConsoleRequest, membership: Membership, rule: AlertRule | None, values: dict[str, Any], *,
    error: InterfaceError | None = None, preview: evaluation.Preview | None = None, preview_for: int = 0,
    status: int = 200,
) -> HttpResponse:  # fmt: skip
    agents = Agent.objects.filter(tenant=membership.tenant).order_by("name").values_list("pk", "name")[:500]
    targets = NotificationTarget.objects.filter(tenant=membership.tenant).order_by("name")
    context = {
        "rule": rule, "values": values, "agents": agents, "targets": targets, "preview": preview,
        "preview_for": preview_for,
        "error": None if error is None else f"{error.message} ({error.code})",
        "error_field": getattr(error, "field", None), **CHOICES,
    }  # fmt: skip
    return render(request, "alerts/rule_form.html", context, status=status)


@require_GET
@tenant_view()
def rule_list(request: ConsoleRequest, membership: Membership) -> HttpResponse:
    rules = AlertRule.objects.filter(tenant=membership.tenant).select_related("agent").order_by("name")
    return render(request, "alerts/rules.html", {"rules": rules})


def _unsaved(membership: Membership, spec: RuleSpec) -> AlertRule:
    fields = {k: v for k, v in spec.__dict__.items() if k != "targets"}
    return AlertRule(tenant=membership.tenant, **fields)


@require_http_methods(["GET", "POST"])
@tenant_view(need=Role.ADMIN)
def rule_edit(request: ConsoleRequest, membership: Membership, rule_id: int | None = None) -> HttpResponse:
    rule = None if rule_id is None else get_object_or_404(AlertRule, pk=rule_id, tenant=membership.tenant)
    if request.method == "GET":
        return _form(request, membership, rule, _values(rule))
    values = _submitted(request)
    try:
        spec = rule_spec(values)
        if request.POST.get("preview"):
            found = evaluation.preview(membership.tenant.pk, _unsaved(membership, spec))
            return _form(request, membership, rule, values, preview=found, preview_for=spec.for_seconds)
        actor = request_actor(request)
        if rule is None:
            saved = services.rule_create(tenant=membership.tenant, spec=spec, actor=actor)
        else:
            saved = services.rule_update(tenant=membership.tenant, rule_id=rule.pk, spec=spec, actor=actor)
    except InterfaceError as exc:
        return _form(request, membership, rule, values, error=exc, status=exc.http_status)
    messages.success(request, f"The rule “{saved.name}” is saved; it is evaluated within seconds.")
    return redirect("alerts:rules", membership.tenant.slug)


@require_POST
@tenant_view(need=Role.ADMIN)
def rule_toggle(request: ConsoleRequest, membership: Membership, rule_id: int) -> HttpResponse:
    rule = get_object_or_404(AlertRule, pk=rule_id, tenant=membership.tenant)
    values = _values(rule)
    values["enabled"] = "" if rule.enabled else "on"
    try:
        saved = services.rule_update(
            tenant=membership.tenant, rule_id=rule.pk, spec=rule_spec(values), actor=request_actor(request)
        )  # fmt: skip
    except InterfaceError as exc:
        messages.error(request, f"{exc.message} ({exc.code})")
    else:
        messages.success(request, f"The rule “{saved.name}” is {'on' if saved.enabled else 'off'}.")
    return redirect("alerts:rules", membership.tenant.slug)


def _targets_page(request: ConsoleRequest, membership: Membership, status: int = 200, **context: Any) -> HttpResponse:
    targets = NotificationTarget.objects.filter(tenant=membership.tenant).prefetch_related("rules").order_by("name")
    return render(request, "alerts/targets.html", {"targets": targets, **context}, status=status)


@require_GET
@tenant_view(need=Role.ADMIN)
def target_list(request: ConsoleRequest, membership: Membership) -> HttpResponse:
    return _targets_page(request, membership)


@require_POST
@tenant_view(need=Role.ADMIN)
def target_add(request: ConsoleRequest, membership: Membership) -> HttpResponse:
    values = {k: request.POST.get(k, "") for k in ("name", "kind", "url", "emails")}
    try:
        target = services.target_create(
            tenant=membership.tenant, spec=target_spec(values), actor=request_actor(request)
        )
    except InterfaceError as exc:
        return _targets_page(
            request, membership, status=exc.http_status, values=values, error=f"{exc.message} ({exc.code})",
            error_field=getattr(exc, "field", None),
        )  # fmt: skip
    messages.success(request, f"“{target.name}” added. Choose it on a rule for the rule's alerts to reach it.")
    return redirect("alerts:targets", membership.tenant.slug)


@require_POST
@tenant_view(need=Role.ADMIN)
def target_approvals(request: ConsoleRequest, membership: Membership, target_id: int) -> HttpResponse:
    on = request.POST.get("approvals") == "on"
    try:
        target = services.target_approvals_set(
            tenant=membership.tenant, target_id=target_id, on=on, actor=request_actor(request)
        )
    except InterfaceError as exc:
        messages.error(request, f"{exc.message} ({exc.code})")
    else:
        told = "is told of each new approval request" if on else "is no longer told of approval requests"
        messages.success(request, f"“{target.name}” {told}.")
    return redirect("alerts:targets", membership.tenant.slug)


@require_POST
@tenant_view(need=Role.ADMIN)
def target_delete(request: ConsoleRequest, membership: Membership, target_id: int) -> HttpResponse:
    try:
        services.target_delete(tenant=membership.tenant, target_id=target_id, actor=request_actor(request))
    except InterfaceError as exc:
        messages.error(request, f"{exc.message} ({exc.code})")
    else:
        messages.success(request, "The target was removed; its rules no longer send to it.")
    return redirect("alerts:targets", membership.tenant.slug)
