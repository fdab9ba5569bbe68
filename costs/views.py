"""The tenant's cost page (docs/costs.md, "The cost page"), for every member: a range,
its total beside the period before, what is unknown (usage without a price), the month's
projection, and the top models, agents and labels; each breakdown as CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from audit.services import request_actor
from core import money
from core.errors import ErrorCode, InterfaceError
from core.http import ConsoleRequest
from core.inputs import InputProblem, parse_time
from costs import budgets, pricing, selectors, services
from costs.models import Budget, ModelPrice
from costs.selectors import Line
from fleet.models import Agent
from realtime import hub
from tenancy.decorators import tenant_view
from tenancy.models import Membership, Role

RANGES = {"today": "Today", "7d": "7 days", "30d": "30 days", "mtd": "Month to date", "custom": "Custom"}
TOP = 20
BY = {"model": "Model", "agent": "Agent", "label": "Label"}


@dataclass(frozen=True)
class Period:
    key: str
    start: datetime
    end: datetime
    partial: bool  # it goes on past now: what it says so far


def period(params: dict[str, str], now: datetime) -> Period:
    """The range the query string asks for (month to date by default), checked."""
    key = params.get("range") or "mtd"
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if key == "today":
        return Period(key, day, now, True)
    if key in ("7d", "30d"):
        return Period(key, now - timedelta(days=int(key[:-1])), now, False)
    if key == "mtd":
        return Period(key, day.replace(day=1), now, True)
    if key != "custom":
        raise InterfaceError(
            ErrorCode.COST_INVALID_QUERY, f"“range” is one of {', '.join(RANGES)}.", details={"field": "range"}
        )
    found: dict[str, datetime] = {}
    for field in ("start", "end"):
        try:
            when = parse_time(params.get(field, ""))
        except InputProblem as exc:
            raise InterfaceError(ErrorCode.COST_INVALID_QUERY, f"“{field}”: {exc}.", details={"field": field}) from None
        if when is None:
            raise InterfaceError(
                ErrorCode.COST_INVALID_QUERY, f"Give the custom range's {field}.", details={"field": field}
            )
        found[field] = when
    start, end = selectors.cost_range(found["start"], min(found["end"], now), now)
    return Period(key, start, end, found["end"] >= now)


def _params(request: ConsoleRequest) -> dict[str, str]:
    return {key: str(value).strip() for key, value in request.GET.items() if str(value).strip()}


def ranked_lines(lines: dict[str, Line]) -> list[tuple[str, Line]]:
    """(key, line) of each model (or label), most cost first."""
    return [(line.key, line) for line in selectors.ranked(lines)]


def agents_and_labels(tenant_id: int, agents: dict[str, Line]) -> tuple[list[tuple[str, Line]], list[tuple[str, Line]]]:
    """From one by-agent sum: (external id, line) of each agent, and (label, line) of each
    agent label (an agent counts towards each of its labels), each most cost first."""
    known = {
        str(a.pk): a
        for a in Agent.objects.filter(tenant_id=tenant_id, pk__in=list(agents)).only("external_id", "labels")
    }
    by_agent = [
        (known[line.key].external_id if line.key in known else line.key, line) for line in selectors.ranked(agents)
    ]
    labels: dict[str, Line] = {}
    for key, line in agents.items():
        agent = known.get(key)
        for name, value in sorted((agent.labels if agent else {}).items()):
            label = labels.setdefault(f"{name}={value}", Line(f"{name}={value}"))
            label.tokens += line.tokens
            label.records += line.records
            label.unpriced += line.unpriced
            if line.cost is not None:
                label.cost = (label.cost or Decimal(0)) + line.cost
    return by_agent, ranked_lines(labels)


def lines_by(tenant_id: int, start: datetime, end: datetime, by: str) -> list[tuple[str, Line]]:
    """(label, line) of each model, agent or agent label, most cost first."""
    if by == "model":
        return ranked_lines(selectors.sums(tenant_id, start, end))
    agents, labels = agents_and_labels(tenant_id, selectors.sums(tenant_id, start, end, by="agent_id"))
    return agents if by == "agent" else labels


@require_GET
@tenant_view()
def cost_page(request: ConsoleRequest, membership: Membership) -> HttpResponse:
    tenant = membership.tenant
    now = timezone.now()
    if request.htmx and request.htmx.target == "cost-budgets":  # the live part, read again after spending
        part = {"budgets": _budgets(tenant.pk, now), "now": now, "current": membership}
        return render(request, "costs/_budgets.html", part)
    live = hub.current_seq(tenant.pk)  # before the figures: anything later is caught on connect
    params = _params(request)
    error: InterfaceError | None = None
    context: dict[str, Any] = {
        "ranges": RANGES, "params": params, "range": params.get("range") or "mtd", "live_view": "costs",
        "live_seq": "" if live is None else live,
    }  # fmt: skip
    try:
        shown = period(params, now)
    except InterfaceError as exc:
        error, shown = exc, period({}, now)
    # Each sum of the range read once: the models give the totals and their own lines, the
    # agents their lines and the labels'.
    models = selectors.sums(tenant.pk, shown.start, shown.end)
    found = selectors.breakdown_of(shown.start, shown.end, models)
    agents, labels = agents_and_labels(tenant.pk, selectors.sums(tenant.pk, shown.start, shown.end, by="agent_id"))
    span = shown.end - shown.start
    before = selectors.breakdown(tenant.pk, shown.start - span, shown.start).total_cost_usd
    change = None if not before else (found.total_cost_usd - before) * 100 / before
    # Month to date is the range itself by default: not read again.
    to_date, projected = selectors.projection(
        tenant.pk, now, so_far=found.total_cost_usd if shown.key == "mtd" and not error else None
    )
    first_unpriced = None
    if found.unpriced_records:
        first_unpriced = (
            selectors.UsageRecord.objects.filter(
                tenant=tenant, cost_usd__isnull=True, occurred_at__gte=shown.start, occurred_at__lt=shown.end
            )
            .order_by("occurred_at")
            .values_list("occurred_at", flat=True)
            .first()
        )
    context.update(
        period=shown, found=found, before=before, change=change, to_date=to_date, projected=projected,
        models=ranked_lines(models)[:TOP], agents=agents[:TOP], labels=labels[:TOP],
        first_unpriced=first_unpriced, error=error,
        budgets=_budgets(tenant.pk, now),
        chart=selectors.by_model_over_time(tenant.pk, shown.start, shown.end),
        now=now, error_field=(error.details or {}).get("field") if error else None,
        query=request.GET.urlencode(),
    )  # fmt: skip
    return render(request, "costs/costs.html", context, status=400 if error else 200)


def _budgets(tenant_id: int, now: datetime) -> list[budgets.BudgetStatus]:
    return [budgets.status(b, now) for b in Budget.objects.filter(tenant_id=tenant_id).select_related("agent")]


@require_GET
@tenant_view()
def cost_export(request: ConsoleRequest, membership: Membership) -> HttpResponse | StreamingHttpResponse:
    """A breakdown of the range (``by``: model, agent or label) as CSV."""
    tenant = membership.tenant
    params = _params(request)
    by = params.pop("by", "model")
    try:
        if by not in BY:
            raise InterfaceError(
                ErrorCode.COST_INVALID_QUERY, "“by” is model, agent or label.", details={"field": "by"}
            )
        shown = period(params, timezone.now())
    except InterfaceError as exc:
        return render(request, "400.html", {"error": exc}, status=400)
    lines = lines_by(tenant.pk, shown.start, shown.end, by)

    def rows() -> Iterator[str]:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([by, "cost_usd", "tokens", "records", "unpriced_records", "start", "end", "partial"])
        for label, line in lines:
            cost = "" if line.cost is None else format(money.stored(line.cost), "f")
            writer.writerow([label, cost, line.tokens, line.records, line.unpriced,
                             shown.start.isoformat(), shown.end.isoformat(), str(shown.partial).lower()])  # fmt: skip
        yield out.getvalue()

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="costs-{tenant.slug}-by-{by}-{shown.key}.csv"'
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@tenant_view(need=Role.ADMIN)
def budget_save(request: ConsoleRequest, membership: Membership) -> HttpResponse:
    """Add a budget, or change the one of that name (admins); audited."""
    post = request.POST
    try:
        saved = budgets.budget_set(
            tenant_id=membership.tenant.pk, actor=request_actor(request), name=post.get("name", ""),
            monthly_usd=post.get("monthly_usd", "").replace(",", "").removeprefix("$"),
            agent_id=post.get("agent", "").strip() or None, selector=post.get("selector", ""),
            auto_pause=post.get("auto_pause") == "on",
        )  # fmt: skip
    except InterfaceError as exc:
        messages.error(request, f"The budget was not saved: {exc.message} ({exc.code})")
        return redirect(f"{reverse('costs:page', args=[membership.tenant.slug])}#budgets")
    messages.success(request, f"Budget “{saved.name}” saved: {money.usd(saved.monthly_usd)} a month.")
    return redirect(f"{reverse('costs:page', args=[membership.tenant.slug])}#budgets")


@require_POST
@tenant_view(need=Role.ADMIN)
def budget_remove(request: ConsoleRequest, membership: Membership, budget_id: int) -> HttpResponse:
    """Remove one of the tenant's budgets (admins); audited. Its alerts end, and the agents
    it paused are resumed (``budgets.budget_remove``)."""
    try:
        removed = budgets.budget_remove(
            tenant_id=membership.tenant.pk, actor=request_actor(request), budget_id=budget_id
        )
    except InterfaceError as exc:
        if exc.code == ErrorCode.COST_BUDGET_NOT_FOUND:
            raise Http404(exc.message) from None
        messages.error(request, f"The budget was not removed: {exc.message} ({exc.code})")
        return redirect(f"{reverse('costs:page', args=[membership.tenant.slug])}#budgets")
    messages.success(request, f"Budget “{removed.name}” removed; its alerts end, and any agent it paused is resumed.")
    return redirect(f"{reverse('costs:page', args=[membership.tenant.slug])}#budgets")


@require_http_methods(["GET", "POST"])
@tenant_view(need=Role.ADMIN)
def prices(request: ConsoleRequest, membership: Membership) -> HttpResponse:
    """The tenant's own prices (admins): each one it set, the list's price of each model it
    used lately, and a form to add a price from a time on (audited; its usage without a
    price is priced after)."""
    tenant = membership.tenant
    error: InterfaceError | None = None
    typed: dict[str, str] = {}
    if request.method == "POST":
        typed = {k: str(v).strip() for k, v in request.POST.items() if k != "csrfmiddlewaretoken"}
        try:
            spec = _price_spec(typed)
            row = services.price_add(spec=spec, tenant_id=tenant.pk, actor=request_actor(request))
        except InterfaceError as exc:
            error = exc
        else:
            messages.success(request, f"Price of {row.model} saved, from {row.effective_from:%Y-%m-%d %H:%M} UTC.")
            return redirect("costs:prices", tenant.slug)
    now = timezone.now()
    used = list(
        selectors.UsageRecord.objects.filter(tenant=tenant, occurred_at__gte=now - timedelta(days=30))
        .values_list("model", flat=True)
        .distinct()[:200]
    )
    book = pricing.book(tenant.pk)
    context = {
        "own": ModelPrice.objects.filter(tenant=tenant).order_by("model", "-effective_from"),
        "used": [(model, book.find(model, now)) for model in sorted(used)],
        "typed": typed,
        "error": error,
        "error_field": (error.details or {}).get("field") if error else None,
        "now": now,
    }
    return render(request, "costs/prices.html", context, status=error.http_status if error else 200)


def _price_spec(typed: dict[str, str]) -> services.PriceSpec:
    model = typed.get("model", "")
    if not model or len(model) > 100:
        raise InterfaceError(
            ErrorCode.COST_INVALID_QUERY, "Name the model (1 to 100 characters).", details={"field": "model"}
        )
    aliases = tuple(a.strip().lower() for a in typed.get("aliases", "").split(",") if a.strip())
    if any(len(a) > 100 for a in aliases) or len(aliases) > 20:
        raise InterfaceError(
            ErrorCode.COST_INVALID_QUERY, "At most 20 other names of 100 characters.", details={"field": "aliases"}
        )
    start = timezone.now()
    if typed.get("effective_from"):
        try:
            start = parse_time(typed["effective_from"]) or start
        except InputProblem as exc:
            raise InterfaceError(
                ErrorCode.COST_INVALID_QUERY, f"“effective_from”: {exc}.", details={"field": "effective_from"}
            ) from None

    def figure(field: str) -> Decimal:
        return services.amount(typed.get(field) or "0", field)

    cached = typed.get("cached_input_per_mtok")
    return services.PriceSpec(
        model=model, input_per_mtok=figure("input_per_mtok"), output_per_mtok=figure("output_per_mtok"),
        effective_from=start, per_call=figure("per_call"), aliases=aliases, source="the console",
        cached_input_per_mtok=services.amount(cached, "cached_input_per_mtok") if cached else None,
    )  # fmt: skip


@require_http_methods(["GET", "POST"])
@tenant_view(need=Role.ADMIN)
def price_correct(request: ConsoleRequest, membership: Membership, price_id: int) -> HttpResponse:
    """Correct one of the tenant's prices: first the dry run ("412 records, +$31.20"),
    then, confirmed, the correction and the re-pricing (a task), audited."""
    price = ModelPrice.objects.filter(pk=price_id, tenant=membership.tenant).first()
    if price is None:
        raise Http404("No such price of this tenant.")
    typed = {f: str(request.POST.get(f, getattr(price, f) or "")).strip() for f in services.PRICE_FIELDS}
    error: InterfaceError | None = None
    preview = None
    if request.method == "POST":
        try:
            figures = {
                f: None if f == "cached_input_per_mtok" and not typed[f] else services.amount(typed[f] or "0", f)
                for f in services.PRICE_FIELDS
            }
            if request.POST.get("confirm") == "yes":
                done = services.price_correct(price=price, figures=figures, actor=request_actor(request))
                messages.success(
                    request, f"Price of {price.model} corrected: {done.records:,} records are being priced again "
                    f"({_signed(done.difference)}).",
                )  # fmt: skip
                return redirect("costs:prices", membership.tenant.slug)
            preview = services.reprice_preview(price, figures)
        except InterfaceError as exc:
            error = exc
    context = {
        "price": price, "typed": typed, "preview": preview, "error": error,
        "difference": _signed(preview.difference) if preview else "",
        "error_field": (error.details or {}).get("field") if error else None,
    }  # fmt: skip
    return render(request, "costs/price_correct.html", context, status=error.http_status if error else 200)


def _signed(amount: Decimal) -> str:
    return ("+" if amount >= 0 else "") + money.usd(amount)
