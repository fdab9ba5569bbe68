"""Monthly budgets (docs/costs.md, "Budgets"): set by a tenant's admins, audited; how much
of each is used this month, at what rate it is being spent, and when it runs out at that
rate (the countdown the pages show).

Spend is the known cost of the usage the budget covers this calendar month (UTC), read as
every summary is (``costs.selectors.sums``). The burn rate is the known cost of the last
``burn.WINDOW``, per hour, and the countdown is said as every countdown is (costs/burn.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from uuid import UUID

from django.db import transaction
from django.db.models import QuerySet, Sum
from django.utils import timezone

from audit.models import Outcome
from audit.services import Actor, Entry, audit_record
from control.rules import Action, ControlRequest
from control.services import control_execute
from core import money
from core.errors import ErrorCode, InterfaceError
from costs import burn, selectors
from costs.models import Budget, UsageRecord
from costs.services import amount
from fleet.labels import BadSelector, parse_selector, with_selector
from fleet.models import Agent, DesiredState

log = logging.getLogger(__name__)

THRESHOLDS = (50, 80, 100)


def _agents(budget: Budget) -> list[UUID] | None:
    """The agents a budget covers (None: the whole tenant)."""
    if budget.agent_id is not None:
        return [budget.agent_id]
    if not budget.selector:
        return None
    found = with_selector(Agent.objects.filter(tenant_id=budget.tenant_id), parse_selector(budget.selector))
    return list(found.values_list("pk", flat=True))


@dataclass(frozen=True)
class BudgetStatus:
    budget: Budget
    spent: Decimal  # this month, known costs
    burn_per_hour: Decimal
    month_end: datetime
    now: datetime

    @property
    def percent(self) -> float:
        limit = self.budget.monthly_usd
        return 100.0 if not limit else float(self.spent * 100 / limit)

    @property
    def threshold(self) -> int:
        """The highest of 50, 80 and 100 % reached (0 below 50 %)."""
        return max((t for t in THRESHOLDS if self.percent >= t), default=0)

    @property
    def runs_out_in(self) -> timedelta | None:
        """At the current rate, how long until it is used up: zero when it is, None when
        nothing is being spent."""
        return burn.runs_out_in(self.budget.monthly_usd - self.spent, self.burn_per_hour)

    @property
    def countdown_text(self) -> str:
        return self.countdown(self.now)

    def countdown(self, now: datetime) -> str:
        """What the page says of it: "runs out in ~2 h 14 min at the current rate"."""
        return burn.countdown(
            self.budget.monthly_usd - self.spent, self.burn_per_hour, now, self.month_end,
            idle="nothing is being spent now", lasts="lasts the month at the current rate",
        )  # fmt: skip


def month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def status(budget: Budget, now: datetime | None = None) -> BudgetStatus:
    now = now or timezone.now()
    first = month_start(now)
    following = (first + timedelta(days=32)).replace(day=1)
    agents = _agents(budget)
    if agents is None:
        spent = selectors.breakdown(budget.tenant_id, first, now).total_cost_usd
    elif len(agents) == 1:  # one agent: its own rows, not every agent's
        spent = selectors.breakdown(budget.tenant_id, first, now, agent_id=agents[0]).total_cost_usd
    else:
        lines = selectors.sums(budget.tenant_id, first, now, by="agent_id")
        covered = {str(a) for a in agents}
        spent = sum((line.cost for key, line in lines.items() if key in covered and line.cost is not None), Decimal(0))
    recent = UsageRecord.objects.filter(
        tenant_id=budget.tenant_id, occurred_at__gte=now - burn.WINDOW, occurred_at__lt=now
    )
    if agents is not None:
        recent = recent.filter(agent_id__in=agents)
    burned = recent.aggregate(total=Sum("cost_usd"))["total"] or Decimal(0)
    return BudgetStatus(budget, Decimal(spent), burn.per_hour(burned), following, now)


def covering(agent: Agent) -> list[Budget]:
    """The tenant's budgets that cover ``agent``: the whole tenant's, its own, and those
    whose label selector picks it."""
    found = []
    for budget in Budget.objects.filter(tenant_id=agent.tenant_id).order_by("name"):
        if budget.agent_id is not None:
            if budget.agent_id == agent.pk:
                found.append(budget)
        elif not budget.selector:
            found.append(budget)
        else:
            try:
                picked = with_selector(Agent.objects.filter(pk=agent.pk), parse_selector(budget.selector)).exists()
            except BadSelector:
                picked = False
            if picked:
                found.append(budget)
    return found


@transaction.atomic
def budget_set(
    *, tenant_id: int, actor: Actor, name: str, monthly_usd: object, agent_id: UUID | str | None = None,
    selector: str = "", auto_pause: bool = False,
) -> Budget:  # fmt: skip
    """Add a budget or change the one of that name; refused with E10602/E10603 (the
    amount), E10608 (a selector no agent label of the tenant answers, or one that does not
    parse), E10601 (an unknown agent or a bad name). Audited as ``budget.set``."""
    name = name.strip()
    if not name or len(name) > 100:
        raise InterfaceError(
            ErrorCode.COST_INVALID_QUERY, "A budget needs a name of 1 to 100 characters.", details={"field": "name"}
        )
    limit = amount(monthly_usd, "monthly_usd", places=2, whole=10)
    agent = None
    if agent_id:
        agent = Agent.objects.filter(tenant_id=tenant_id, pk=agent_id).first()
        if agent is None:
            raise InterfaceError(
                ErrorCode.COST_INVALID_QUERY, "No such agent in this tenant.", details={"field": "agent"}
            )
    selector = selector.strip()
    if selector:
        try:
            requirements = parse_selector(selector)
        except BadSelector as exc:
            raise InterfaceError(ErrorCode.COST_UNKNOWN_SELECTOR, str(exc), details={"field": "selector"}) from None
        keys = {r.key for r in requirements}
        known = set()
        for labels in Agent.objects.filter(tenant_id=tenant_id).values_list("labels", flat=True).iterator():
            known |= set(labels or {})
        unknown = sorted(keys - known)
        if unknown:
            raise InterfaceError(
                ErrorCode.COST_UNKNOWN_SELECTOR, f"No agent of this tenant has the label “{unknown[0]}”.",
                details={"field": "selector"},
            )  # fmt: skip
    before = Budget.objects.filter(tenant_id=tenant_id, name=name).first()
    budget, _ = Budget.objects.update_or_create(
        tenant_id=tenant_id, name=name,
        defaults={"monthly_usd": limit, "agent": agent, "selector": selector, "auto_pause": auto_pause},
    )  # fmt: skip
    delta: dict[str, dict[str, object]] = {
        "monthly_usd": {"from": str(before.monthly_usd) if before else None, "to": str(limit)}
    }
    if before is None or before.auto_pause != auto_pause:
        delta["auto_pause"] = {"from": before.auto_pause if before else None, "to": auto_pause}
    audit_record(
        tenant_id=tenant_id, actor=actor,
        entry=Entry("budget.set", "budget", str(budget.pk), Outcome.SUCCESS, delta={"name": name, **delta}),
    )  # fmt: skip
    return budget


@transaction.atomic
def budget_remove(*, tenant_id: int, actor: Actor, budget_id: int) -> Budget:
    """Remove one of the tenant's budgets: E10610 when the tenant has no budget of that id
    (another tenant's is as absent as one that never was). Audited as ``budget.remove``.

    Its alerts end at the next evaluation (an alert of a budget since removed ends,
    alerts/evaluation.py), and the agents it paused that nobody has touched since are
    resumed after commit, as when its "used up" alert resolves (``resume_covered``).
    Returns the budget as it was."""
    budget = (
        Budget.objects.select_for_update(of=("self",))
        .select_related("tenant")
        .filter(tenant_id=tenant_id, pk=budget_id)
        .first()
    )
    if budget is None:
        raise InterfaceError(
            ErrorCode.COST_BUDGET_NOT_FOUND, "No such budget in this tenant.", details={"field": "budget"}
        )
    # What it covers and has spent, read while it is there. Nothing else resumes the
    # agents it paused once it is gone, so they are resumed even if it no longer pauses.
    found = status(budget)
    audit_record(
        tenant_id=tenant_id, actor=actor,
        entry=Entry("budget.remove", "budget", str(budget.pk), Outcome.SUCCESS, delta={
            "name": {"from": budget.name, "to": None}, "monthly_usd": {"from": str(budget.monthly_usd), "to": None},
        }),
    )  # fmt: skip
    Budget.objects.filter(pk=budget.pk).delete()  # the instance keeps its id for the caller
    said = f"budget “{budget.name}” removed: {money.usd(found.spent)} of {money.usd(budget.monthly_usd)} used"
    # After commit, as after an evaluation: control takes its own locks.
    transaction.on_commit(lambda: resume_covered(found, said=said), robust=True)
    return budget


# --- auto-pause ------------------------------------------------------------------------------

# Who pauses an agent for a budget: the system, named (docs/costs.md, "Budgets").
BUDGET_ACTOR = Actor(user=None, name="budget")
PAUSE_REASON = "paused by budget"


def _covered_agents(found: BudgetStatus) -> QuerySet[Agent]:
    covered = _agents(found.budget)
    agents = Agent.objects.filter(tenant_id=found.budget.tenant_id)
    return agents if covered is None else agents.filter(pk__in=covered)


def _control(found: BudgetStatus, agent: Agent, action: Action, reason: str) -> bool:
    for attempt in range(3):  # the lock may be held by a person's change a moment
        try:
            control_execute(
                actor=BUDGET_ACTOR,
                tenant=found.budget.tenant,
                request=ControlRequest(action, str(agent.pk), reason=reason),
            )
            return True
        except InterfaceError as exc:
            if exc.code not in (ErrorCode.CONTROL_LOCKED, ErrorCode.CONTROL_STALE) or attempt == 2:
                log.warning("budget %s could not %s %s: %s", found.budget.pk, action, agent.external_id, exc.code)
                return False
    return False


def pause_covered(found: BudgetStatus) -> list[UUID]:
    """Pause, through control as the system, the running agents a used-up budget covers
    (each change locked and audited like a person's); returns the agents paused."""
    said = (
        f"{PAUSE_REASON} “{found.budget.name}”: {money.usd(found.spent)} of {money.usd(found.budget.monthly_usd)} used"
    )
    running = _covered_agents(found).filter(desired_state=DesiredState.RUNNING).select_related("tenant")
    return [a.pk for a in running if _control(found, a, Action.PAUSE, said[:500])]


def resume_covered(found: BudgetStatus, *, said: str | None = None) -> list[UUID]:
    """Resume the agents the budget paused and nobody has touched since (their pause is
    still this budget's), once it is no longer used up (raised, a new month, or removed:
    ``said`` is then the reason)."""
    paused = _covered_agents(found).filter(
        desired_state=DesiredState.PAUSED, pause_reason__startswith=f"{PAUSE_REASON} “{found.budget.name}”"
    )
    said = said or (
        f"budget “{found.budget.name}” no longer used up: {money.usd(found.spent)} of {money.usd(found.budget.monthly_usd)}"
    )
    return [a.pk for a in paused.select_related("tenant") if _control(found, a, Action.RESUME, said[:500])]
