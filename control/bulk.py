"""Bulk control: pause, resume or stop many agents, previewed, run in the background,
each agent's change made (and audited) by the control service under the batch's id, and
undone as a whole.

1. ``bulk_select``: the agents picked in the list, or matching a label selector.
2. ``bulk_preview``: a dry run ("23 will be paused; 2 already are; 1 is stopped and will
   be skipped"); nothing is written.
3. ``bulk_start``: the batch and one pending item per agent, then the task after commit.
4. ``bulk_run`` (the task): each pending item through ``control_execute``, progress
   published as it goes (``control.batch``).
5. ``bulk_undo``: a new batch reverting exactly the agents this one changed, skipping any
   changed since (their version moved on).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from audit.services import Actor
from control import locks
from control.models import Batch, BatchItem, ItemOutcome
from control.rules import Action, ControlRequest, ControlStatus
from control.services import authorize, control_execute
from core import runner
from core.errors import ErrorCode, InterfaceError
from fleet.labels import BadSelector, parse_selector, with_selector
from fleet.models import Agent, DesiredState
from realtime import hub
from tenancy.models import Tenant

BULK_ACTIONS = (Action.PAUSE, Action.RESUME, Action.STOP)
MAX_AGENTS = 10_000
PROGRESS_EVERY = 50  # items between progress events
BULK_THREADS = 4
TARGET = {Action.PAUSE: DesiredState.PAUSED, Action.RESUME: DesiredState.RUNNING, Action.STOP: DesiredState.STOPPED}
VERB = {Action.PAUSE: "paused", Action.RESUME: "resumed", Action.STOP: "stopped"}


def bulk_select(tenant: Tenant, *, agent_ids: list[str] | None = None, selector: str | None = None) -> list[Agent]:
    """The tenant's agents by id, or by a label selector (``team=search,env=prod``)."""
    agents = Agent.objects.filter(tenant=tenant).order_by("name", "pk")
    if selector is not None:
        try:
            labels = parse_selector(selector)
        except BadSelector as exc:
            raise InterfaceError(ErrorCode.CONTROL_INVALID_SELECTION, str(exc)) from None
        if not labels:
            raise InterfaceError(
                ErrorCode.CONTROL_INVALID_SELECTION, "Give a label selector, e.g. team=search,env!=dev."
            )
        agents = with_selector(agents, labels)
    else:
        try:
            ids = [UUID(str(a)) for a in agent_ids or []]
        except ValueError:
            raise InterfaceError(ErrorCode.CONTROL_INVALID_SELECTION, "Agents are named by their ids.") from None
        if not ids:
            raise InterfaceError(ErrorCode.CONTROL_INVALID_SELECTION, "Select at least one agent.")
        agents = agents.filter(pk__in=ids)
    found = list(agents[: MAX_AGENTS + 1])
    if len(found) > MAX_AGENTS:
        raise InterfaceError(ErrorCode.CONTROL_INVALID_SELECTION, f"A batch holds at most {MAX_AGENTS:,} agents.")
    return found


@dataclass(frozen=True)
class Preview:
    action: Action
    change: list[Agent] = field(default_factory=list)
    already: list[Agent] = field(default_factory=list)
    skipped: list[Agent] = field(default_factory=list)

    @property
    def summary(self) -> str:
        verb = VERB[self.action]
        parts = [f"{len(self.change)} will be {verb}"]
        if self.already:
            parts.append(f"{len(self.already)} already {'is' if len(self.already) == 1 else 'are'}")
        if self.skipped:
            stopped = "is stopped" if len(self.skipped) == 1 else "are stopped"
            parts.append(f"{len(self.skipped)} {stopped} and will be skipped")
        return "; ".join(parts) + "."


def bulk_preview(action: Action, agents: list[Agent]) -> Preview:
    """What the batch would do, by each agent's desired state now. Writes nothing."""
    preview = Preview(action)
    target = TARGET[action]
    for agent in agents:
        if agent.desired_state == target:
            preview.already.append(agent)
        elif agent.desired_state == DesiredState.STOPPED:
            preview.skipped.append(agent)  # only a restart brings a stopped agent back
        else:
            preview.change.append(agent)
    return preview


@transaction.atomic
def bulk_start(
    *, tenant: Tenant, actor: Actor, action: Action, agents: list[Agent], reason: str = "", undo_of: Batch | None = None
) -> Batch:
    if action not in BULK_ACTIONS:
        raise InterfaceError(ErrorCode.CONTROL_INVALID_ACTION, "A batch pauses, resumes or stops agents.")
    authorize(tenant, actor, action)
    if action == Action.STOP and not reason.strip():
        raise InterfaceError(ErrorCode.CONTROL_REASON_REQUIRED, "An emergency stop needs a reason.")
    if not agents:
        raise InterfaceError(ErrorCode.CONTROL_INVALID_SELECTION, "Select at least one agent.")
    try:
        # No item could take its lock: refuse before anything is stored.
        locks.check()
    except locks.LockUnavailable:
        raise InterfaceError(
            ErrorCode.CONTROL_UNAVAILABLE,
            "The lock store (Redis) cannot be reached; the batch was not started and nothing was changed.",
        ) from None
    batch = Batch.objects.create(
        tenant=tenant,
        created_by=actor.user,
        action=str(action),
        reason=reason[:500],
        undo_of=undo_of,
        created_at=timezone.now(),
    )
    BatchItem.objects.bulk_create(BatchItem(batch=batch, agent=agent) for agent in agents)
    runner.enqueue("control.tasks.run_batch", str(batch.pk), on_failure=lambda exc: bulk_not_queued(batch.pk))
    return batch


NOT_QUEUED = "The batch could not be queued (Redis cannot be reached); nothing was changed. Start it again."


def bulk_not_queued(batch_id: UUID | str) -> None:
    """The batch's task could not be queued after its commit: its pending items fail with
    E10306 and the batch ends, so it never stays pending with nothing to run it."""
    with transaction.atomic():
        BatchItem.objects.filter(batch_id=batch_id, outcome=ItemOutcome.PENDING).update(
            outcome=ItemOutcome.FAILED, error_code=str(ErrorCode.CONTROL_UNAVAILABLE), message=NOT_QUEUED
        )
        Batch.objects.filter(pk=batch_id, finished_at__isnull=True).update(finished_at=timezone.now())


def _progress(batch: Batch) -> dict[str, Any]:
    counts = dict(batch.items.values_list("outcome").annotate(n=Count("id")).values_list("outcome", "n"))
    total = sum(counts.values())
    return {
        "batch_id": batch.pk,
        "action": batch.action,
        "total": total,
        "done": total - counts.get(ItemOutcome.PENDING, 0),
        "counts": counts,
        "finished": batch.finished_at is not None,
    }


def bulk_progress(batch: Batch) -> dict[str, Any]:
    return _progress(batch)


@dataclass(frozen=True)
class BatchRow:
    """A batch as the history lists it: its counts by outcome, read in the same query."""

    batch: Batch
    total: int
    counts: dict[str, int]

    @property
    def finished(self) -> bool:
        return self.batch.finished_at is not None


def batch_history(tenant: Tenant, *, limit: int = 50, before: datetime | None = None) -> list[BatchRow]:
    """The tenant's latest batches (started before ``before``), newest first, each with who
    started it, what it undoes or what undid it, and its items counted by outcome."""
    outcomes = {value: Count("items", filter=Q(items__outcome=value)) for value in ItemOutcome.values}
    found = (
        Batch.objects.filter(tenant=tenant)
        .select_related("created_by", "undo_of", "undone_by")
        .annotate(total=Count("items"), **{f"n_{value}": n for value, n in outcomes.items()})
        .order_by("-created_at", "-pk")
    )
    if before is not None:
        found = found.filter(created_at__lt=before)
    return [
        BatchRow(
            b, b.total, {value: getattr(b, f"n_{value}") for value in ItemOutcome.values if getattr(b, f"n_{value}")}
        )
        for b in found[:limit]
    ]


def bulk_run(batch_id: UUID | str) -> dict[str, Any]:
    """Run the batch's pending items (again safe after a crash: done items stay done)."""
    batch = Batch.objects.select_related("tenant", "created_by").get(pk=batch_id)
    actor = Actor(user=batch.created_by, request_id=f"batch:{batch.pk}"[:64])
    action = Action(batch.action)
    pending = list(batch.items.filter(outcome=ItemOutcome.PENDING))

    def one(item: BatchItem) -> None:
        try:
            if batch.undo_of_id is not None and not _unchanged_since(item):
                item.outcome, item.message = ItemOutcome.SKIPPED, "changed since the batch it undoes; left alone"
            else:
                _run_item(batch, actor, action, item)
        finally:
            if threaded:
                connection.close()  # back to the pool: this thread is the executor's

    # Each item waits mostly on PostgreSQL and Redis, and items lock different agents: a
    # few threads run them side by side. Inside a transaction (a test's), and on SQLite
    # (one writer at a time), one by one.
    threaded = connection.vendor == "postgresql" and not connection.in_atomic_block
    with ThreadPoolExecutor(max_workers=BULK_THREADS if threaded else 1, thread_name_prefix="l10-bulk") as pool:
        for start in range(0, len(pending), PROGRESS_EVERY):
            chunk = pending[start : start + PROGRESS_EVERY]
            if threaded:
                list(pool.map(one, chunk))
            else:
                for item in chunk:
                    one(item)
            _save(chunk)
            hub.publish(batch.tenant_id, "control.batch", _progress(batch))
    Batch.objects.filter(pk=batch.pk, finished_at__isnull=True).update(finished_at=timezone.now())
    batch.refresh_from_db(fields=["finished_at"])
    progress = _progress(batch)
    hub.publish(batch.tenant_id, "control.batch", progress)
    return progress


def _run_item(batch: Batch, actor: Actor, action: Action, item: BatchItem) -> None:
    """One agent through the control service, as the batch's starter (whose role the
    service reads afresh: a starter demoted meanwhile is refused)."""
    # A key per batch and agent: a run cut short (its worker killed) and delivered again
    # replays what an item already did, rather than doing it twice (docs/operations.md, "Faults").
    request = ControlRequest(
        action, str(item.agent_id), reason=batch.reason, batch_id=batch.pk,
        idempotency_key=f"batch:{batch.pk}:{item.agent_id}",
    )  # fmt: skip
    for attempt in range(2):  # once more if the agent changed between its read and its lock
        try:
            result = control_execute(tenant=batch.tenant, actor=actor, request=request)
        except InterfaceError as exc:
            if exc.code == ErrorCode.CONTROL_STALE and attempt == 0:
                continue
            skipped = exc.code == ErrorCode.CONTROL_INVALID_TRANSITION
            item.outcome = ItemOutcome.SKIPPED if skipped else ItemOutcome.FAILED
            item.error_code, item.message = str(exc.code), exc.message[:300]
        else:
            item.outcome = ItemOutcome.SUCCESS if result.status == ControlStatus.SUCCESS else ItemOutcome.NOOP
            item.message, item.version = result.message[:300], result.version
        return


def _save(items: list[BatchItem]) -> None:
    BatchItem.objects.bulk_update(items, ["outcome", "error_code", "message", "version"], batch_size=500)


# The item an undo reverts: its original item in the batch being undone.
def _unchanged_since(item: BatchItem) -> bool:
    original = (
        BatchItem.objects.filter(batch=item.batch.undo_of_id, agent_id=item.agent_id)
        .values_list("version", flat=True)
        .first()
    )
    current = Agent.objects.filter(pk=item.agent_id).values_list("version", flat=True).first()
    return original is not None and original == current


UNDO = {Action.PAUSE: Action.RESUME, Action.RESUME: Action.PAUSE}


def bulk_undo(*, batch: Batch, actor: Actor) -> Batch:
    """Revert exactly the agents this batch changed, as a new batch of its own."""
    action = Action(batch.action)
    if action not in UNDO:
        raise InterfaceError(
            ErrorCode.CONTROL_INVALID_TRANSITION, "A stop is not undone: an admin restarts each agent."
        )
    if batch.finished_at is None:
        raise InterfaceError(ErrorCode.CONTROL_IN_FLIGHT, "The batch is still running; undo it once it is done.")
    if Batch.objects.filter(undo_of=batch).exists():
        raise InterfaceError(ErrorCode.CONTROL_INVALID_TRANSITION, "This batch was already undone.")
    changed = [item.agent for item in batch.items.filter(outcome=ItemOutcome.SUCCESS).select_related("agent")]
    if not changed:
        raise InterfaceError(ErrorCode.CONTROL_INVALID_TRANSITION, "This batch changed no agent; nothing to undo.")
    return bulk_start(
        tenant=batch.tenant,
        actor=actor,
        action=UNDO[action],
        agents=changed,
        reason=f"Undo of batch {batch.pk}",
        undo_of=batch,
    )
