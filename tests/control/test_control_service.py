"""Control operations through ``control.services``, against PostgreSQL and Redis."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import time_machine
from asgiref.sync import async_to_sync
from django.db import connection, connections
from django.test import override_settings
from django.utils import timezone

from audit.models import AppendOnly, AuditEntry, Outcome
from audit.services import Actor
from control import locks
from control.models import IdempotencyRecord
from control.rules import Action, ControlRequest, ControlResult, ControlStatus
from control.services import control_execute, control_resume_expired, idempotency_purge
from core.errors import InterfaceError
from fleet.models import Agent, DesiredState
from l10console.services import ControlService
from tenancy.models import Membership, Role
from tests.conftest import wait_for
from tests.realtime.conftest import settings_with

pytestmark = pytest.mark.django_db(transaction=True)


def run(tenant, user, action: Action, agent, **options):
    request = ControlRequest(action, str(agent.pk) if isinstance(agent, Agent) else agent, **options)
    return control_execute(tenant=tenant, actor=Actor(user=user, ip="10.1.2.3", user_agent="tests"), request=request)


def refused(code: str, tenant, user, action: Action, agent, **options) -> InterfaceError:
    with pytest.raises(InterfaceError) as caught:
        run(tenant, user, action, agent, **options)
    assert str(caught.value.code) == code, caught.value.message
    return caught.value


def audit() -> list[tuple[str, str, str]]:
    return list(AuditEntry.objects.order_by("id").values_list("action", "outcome", "error_code"))


# --- the operations --------------------------------------------------------------------


def test_an_operator_pauses_an_agent_and_the_change_is_audited(tenant_a, operator_a, agent_a):
    result = run(tenant_a, operator_a, Action.PAUSE, agent_a, reason="maintenance", idempotency_key="k-1")
    assert result.status == ControlStatus.SUCCESS
    assert (result.previous_state, result.new_state) == ("running", "paused")
    agent_a.refresh_from_db()
    assert agent_a.desired_state == DesiredState.PAUSED
    assert result.version == agent_a.version
    assert agent_a.desired_changed_by == operator_a
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.outcome, entry.actor_label) == ("agent.pause", Outcome.SUCCESS, "oscar")
    assert entry.delta == {"desired_state": {"from": "running", "to": "paused"}}
    assert (entry.reason, entry.ip, entry.user_agent, entry.idempotency_key) == (
        "maintenance",
        "10.1.2.3",
        "tests",
        "k-1",
    )
    assert entry.resource_id == str(agent_a.pk)


def test_pausing_a_paused_agent_is_a_noop_that_says_so(tenant_a, operator_a, agent_a):
    run(tenant_a, operator_a, Action.PAUSE, agent_a)
    version = Agent.objects.get().version
    again = run(tenant_a, operator_a, Action.PAUSE, agent_a)
    assert again.status == ControlStatus.NOOP
    assert "already paused" in again.message
    assert Agent.objects.get().version == version
    assert audit() == [("agent.pause", "success", ""), ("agent.pause", "noop", "")]


def test_the_agent_may_be_named_by_its_external_id(tenant_a, operator_a, agent_a):
    assert run(tenant_a, operator_a, Action.PAUSE, "worker-1").agent_id == str(agent_a.pk)


def test_stop_needs_an_admin_and_a_reason_and_only_restart_brings_it_back(tenant_a, admin_a, operator_a, agent_a):
    refused("E10004", tenant_a, operator_a, Action.STOP, agent_a, reason="incident")
    refused("E10307", tenant_a, admin_a, Action.STOP, agent_a, reason="  ")
    assert Agent.objects.get().desired_state == DesiredState.RUNNING
    assert run(tenant_a, admin_a, Action.STOP, agent_a, reason="incident").new_state == "stopped"
    error = refused("E10301", tenant_a, admin_a, Action.RESUME, agent_a)
    assert "restart" in error.message
    refused("E10301", tenant_a, operator_a, Action.PAUSE, agent_a)
    refused("E10004", tenant_a, operator_a, Action.RESTART, agent_a)
    assert run(tenant_a, admin_a, Action.RESTART, agent_a).new_state == "running"
    refused("E10301", tenant_a, admin_a, Action.RESTART, agent_a)


def test_resume_returns_a_paused_agent_to_running(tenant_a, operator_a, agent_a):
    run(tenant_a, operator_a, Action.PAUSE, agent_a)
    result = run(tenant_a, operator_a, Action.RESUME, agent_a)
    assert (result.previous_state, result.new_state) == ("paused", "running")


# --- who may ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "action, options",
    [
        (Action.PAUSE, {}),
        (Action.RESUME, {}),
        (Action.STOP, {"reason": "x"}),
        (Action.RESTART, {}),
        (Action.QUOTA, {"quota_type": "tokens", "new_limit": 5}),
    ],
)
def test_a_viewer_may_do_nothing_and_leaves_a_denied_entry(tenant_a, viewer_a, agent_a, action, options):
    before = Agent.objects.values("desired_state", "version", "quotas").get()
    refused("E10004", tenant_a, viewer_a, action, agent_a, **options)
    assert Agent.objects.values("desired_state", "version", "quotas").get() == before
    assert audit() == [(f"agent.{action}", "denied", "E10004")]


def test_another_tenants_member_reaches_nothing(tenant_a, tenant_b, operator_b, agent_a):
    refused("E10005", tenant_a, operator_b, Action.PAUSE, agent_a)
    # In its own tenant, A's agent does not exist.
    refused("E10101", tenant_b, operator_b, Action.PAUSE, agent_a)
    assert Agent.objects.get().desired_state == DesiredState.RUNNING


# --- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, code",
    [
        ({"quota_type": "dollars", "new_limit": 5}, "E10303"),
        ({"quota_type": "tokens", "new_limit": -1}, "E10303"),
        ({"quota_type": "tokens", "new_limit": 10**13}, "E10303"),
        ({"quota_type": "tokens", "new_limit": 2.5}, "E10303"),
        ({"quota_type": "tokens", "new_limit": True}, "E10303"),
        ({"quota_type": "tokens", "new_limit": "100"}, "E10303"),
        ({"quota_type": "tokens", "new_limit": 5, "period": "week"}, "E10303"),
        ({"quota_type": "tokens", "new_limit": 5, "idempotency_key": "has space"}, "E10308"),
        ({"quota_type": "tokens", "new_limit": 5, "idempotency_key": ""}, "E10308"),
        ({"quota_type": "tokens", "new_limit": 5, "idempotency_key": "k" * 256}, "E10308"),
    ],
)
def test_bad_quota_input_gets_a_clear_code_and_changes_nothing(tenant_a, admin_a, agent_a, options, code):
    refused(code, tenant_a, admin_a, Action.QUOTA, agent_a, **options)
    assert Agent.objects.get().quotas in ({}, None)
    assert not IdempotencyRecord.objects.exists()


def test_an_unknown_agent_is_e10101(tenant_a, operator_a):
    refused("E10101", tenant_a, operator_a, Action.PAUSE, "no-such-agent")
    refused("E10101", tenant_a, operator_a, Action.PAUSE, "0b0e2d4c-8f65-4a43-9e4f-0d6ab1f0a0a0")


def test_a_quota_is_set_per_period_and_day_is_the_default(tenant_a, admin_a, agent_a):
    run(tenant_a, admin_a, Action.QUOTA, agent_a, quota_type="api_calls", new_limit=10_000)
    run(tenant_a, admin_a, Action.QUOTA, agent_a, quota_type="tokens", new_limit=500, period="hour")
    assert Agent.objects.get().quotas == {"api_calls": {"day": 10_000}, "tokens": {"hour": 500}}
    same = run(tenant_a, admin_a, Action.QUOTA, agent_a, quota_type="tokens", new_limit=500, period="hour")
    assert same.status == ControlStatus.NOOP
    entry = AuditEntry.objects.filter(outcome="success").order_by("id").first()
    assert entry is not None and entry.delta == {"quotas.api_calls.day": {"from": None, "to": 10_000}}


# --- idempotency -----------------------------------------------------------------------


def test_a_repeated_key_replays_the_answer_without_running_again(tenant_a, operator_a, agent_a):
    first = run(tenant_a, operator_a, Action.PAUSE, agent_a, idempotency_key="click-1")
    again = run(tenant_a, operator_a, Action.PAUSE, agent_a, idempotency_key="click-1")
    assert again.replayed and not first.replayed
    assert again.as_dict() == first.as_dict()
    assert again.status == ControlStatus.SUCCESS  # the stored answer, not "already paused"
    assert audit() == [("agent.pause", "success", "")]


def test_the_same_key_for_another_request_is_refused(tenant_a, operator_a, agent_a):
    run(tenant_a, operator_a, Action.PAUSE, agent_a, idempotency_key="click-2")
    refused("E10304", tenant_a, operator_a, Action.RESUME, agent_a, idempotency_key="click-2")
    assert Agent.objects.get().desired_state == DesiredState.PAUSED


def test_keys_are_scoped_by_caller(tenant_a, operator_a, admin_a, agent_a):
    run(tenant_a, operator_a, Action.PAUSE, agent_a, idempotency_key="shared")
    # The admin's "shared" is a different key: it runs (and finds nothing to do).
    assert run(tenant_a, admin_a, Action.PAUSE, agent_a, idempotency_key="shared").status == ControlStatus.NOOP


def test_expired_records_are_purged(tenant_a, operator_a, agent_a):
    run(tenant_a, operator_a, Action.PAUSE, agent_a, idempotency_key="old")
    assert idempotency_purge(now=timezone.now()) == 0
    assert idempotency_purge(now=timezone.now() + timedelta(days=2)) == 1
    assert not IdempotencyRecord.objects.exists()


def test_a_key_reused_after_its_ttl_is_a_new_key_before_the_purge(tenant_a, operator_a, agent_a):
    run(tenant_a, operator_a, Action.PAUSE, agent_a, idempotency_key="reused")
    # A day later the record has expired but the hourly purge has not run: the key is free.
    with time_machine.travel(timezone.now() + timedelta(days=1, minutes=1)):
        again = run(tenant_a, operator_a, Action.RESUME, agent_a, idempotency_key="reused")
        assert (again.status, again.replayed, again.new_state) == (ControlStatus.SUCCESS, False, "running")
        replayed = run(tenant_a, operator_a, Action.RESUME, agent_a, idempotency_key="reused")
        assert replayed.replayed and replayed.as_dict() == again.as_dict()
    assert IdempotencyRecord.objects.count() == 1
    assert audit() == [("agent.pause", "success", ""), ("agent.resume", "success", "")]


def test_the_role_is_read_from_the_database_on_every_operation(tenant_a, operator_a, agent_a):
    assert run(tenant_a, operator_a, Action.PAUSE, agent_a).status == ControlStatus.SUCCESS
    Membership.objects.filter(user=operator_a, tenant=tenant_a).update(role=Role.VIEWER)
    refused("E10004", tenant_a, operator_a, Action.RESUME, agent_a)
    Membership.objects.filter(user=operator_a, tenant=tenant_a).delete()
    refused("E10005", tenant_a, operator_a, Action.RESUME, agent_a)
    assert Agent.objects.get().desired_state == DesiredState.PAUSED


# --- concurrency -----------------------------------------------------------------------


def _concurrently(count: int, call: Callable[[int], ControlResult]) -> list[ControlResult | str]:
    barrier = threading.Barrier(count)

    def one(n: int) -> ControlResult | str:
        barrier.wait()
        try:
            return call(n)
        except InterfaceError as exc:
            return str(exc.code)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


@pytest.mark.postgres
def test_fifty_concurrent_pauses_make_one_transition(tenant_a, operator_a, agent_a):
    version = agent_a.version
    answers = _concurrently(50, lambda n: run(tenant_a, operator_a, Action.PAUSE, agent_a, idempotency_key=f"k-{n}"))
    successes = [a for a in answers if not isinstance(a, str) and a.status == ControlStatus.SUCCESS]
    others = [a if isinstance(a, str) else a.status for a in answers if a not in successes]
    assert len(successes) == 1
    assert set(others) <= {"E10302", "E10309", ControlStatus.NOOP}, others
    assert Agent.objects.get().version == version + 1
    assert AuditEntry.objects.filter(outcome="success").count() == 1
    assert AuditEntry.objects.count() == 50


@pytest.mark.postgres
def test_fifty_concurrent_requests_with_one_key_run_once(tenant_a, operator_a, agent_a):
    version = agent_a.version
    answers = _concurrently(50, lambda n: run(tenant_a, operator_a, Action.PAUSE, agent_a, idempotency_key="one"))
    results = [a for a in answers if not isinstance(a, str)]
    codes = [a for a in answers if isinstance(a, str)]
    assert set(codes) <= {"E10302", "E10305", "E10309"}, codes  # each a 409
    assert results, "at least the one that ran answers"
    assert {r.as_dict()["version"] for r in results} == {version + 1}
    assert all(r.status == ControlStatus.SUCCESS for r in results)
    assert sum(not r.replayed for r in results) == 1
    assert Agent.objects.get().version == version + 1
    assert AuditEntry.objects.filter(outcome="success").count() == 1
    assert IdempotencyRecord.objects.count() == 1


# --- locks and fencing -----------------------------------------------------------------


def test_a_held_lock_answers_at_once_with_e10302(tenant_a, operator_a, agent_a):
    token = locks.acquire(agent_a.pk)
    assert token is not None
    try:
        # The holder keeps the lock for its whole TTL (30 s): an answer that came while it
        # still holds it did not wait for it.
        refused("E10302", tenant_a, operator_a, Action.PAUSE, agent_a)
        assert locks.holder(agent_a.pk) == token
    finally:
        locks.release(agent_a.pk, token)
    assert run(tenant_a, operator_a, Action.PAUSE, agent_a).status == ControlStatus.SUCCESS


def test_releasing_an_expired_lock_leaves_the_next_holders_alone(agent_a):
    mine = locks.acquire(agent_a.pk, ttl_ms=50)
    assert mine is not None
    wait_for(lambda: locks.holder(agent_a.pk) is None, timeout=5, what="the lock to expire")
    theirs = locks.acquire(agent_a.pk)
    assert theirs is not None
    locks.release(agent_a.pk, mine)
    assert locks.acquire(agent_a.pk) is None  # theirs still holds it
    locks.release(agent_a.pk, theirs)


@pytest.mark.postgres
def test_an_operation_whose_lock_expired_cannot_overwrite_a_newer_change(tenant_a, operator_a, agent_a):
    """A pause takes the lock and reads the version, then waits on the agent's row (held
    from a second connection). Its lock expires; a newer change commits. The pause must
    then write nothing."""
    params = connection.get_connection_params()
    other = psycopg.connect(**{k: v for k, v in params.items() if k in ("host", "port", "dbname", "user", "password")})
    table = Agent._meta.db_table
    with override_settings(L10=settings_with(L10_CONTROL_LOCK_TTL="1")):
        other.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE", [agent_a.pk])  # noqa: S608
        outcome: list[object] = []

        def pause() -> None:
            try:
                outcome.append(run(tenant_a, operator_a, Action.PAUSE, agent_a))
            except InterfaceError as exc:
                outcome.append(str(exc.code))
            finally:
                connections.close_all()

        worker = threading.Thread(target=pause)
        worker.start()
        wait_for(lambda: locks.holder(agent_a.pk), timeout=5, what="the pause to take its lock")
        wait_for(lambda: locks.holder(agent_a.pk) is None, timeout=5, what="the pause's lock to expire")
        # The newer change, made while the pause waits on the row.
        other.execute(
            f"UPDATE {table} SET desired_state = 'stopped', version = version + 1 WHERE id = %s",  # noqa: S608
            [agent_a.pk],
        )
        other.commit()
        worker.join(timeout=15)
    other.close()
    assert outcome == ["E10309"]
    assert Agent.objects.get().desired_state == DesiredState.STOPPED
    assert audit() == [("agent.pause", "denied", "E10309")]


@pytest.mark.redis
def test_a_dead_redis_refuses_with_e10306_and_changes_nothing(private_redis, tenant_a, operator_a, agent_a):
    with override_settings(L10=settings_with(L10_REDIS_PORT=str(private_redis.port), L10_REDIS_DB="0")):
        private_redis.kill()
        error = refused("E10306", tenant_a, operator_a, Action.PAUSE, agent_a)
    assert "nothing was changed" in error.message
    assert Agent.objects.get().desired_state == DesiredState.RUNNING
    assert audit() == [("agent.pause", "failed", "E10306")]


# --- the audit trail -------------------------------------------------------------------


@pytest.mark.postgres
def test_the_audit_trail_cannot_be_edited_or_deleted(tenant_a, operator_a, agent_a):
    run(tenant_a, operator_a, Action.PAUSE, agent_a)
    # The ORM refuses before the database would (its triggers: tests/audit/test_append_only.py).
    with pytest.raises(AppendOnly, match="append-only"):
        AuditEntry.objects.update(reason="rewritten")
    with pytest.raises(AppendOnly, match="append-only"):
        AuditEntry.objects.all().delete()
    assert AuditEntry.objects.get().reason == ""


# --- timed pauses and their mode --------------------------------------------------------


def test_a_timed_pause_records_why_until_when_and_how(tenant_a, operator_a, agent_a):
    before = timezone.now()
    run(tenant_a, operator_a, Action.PAUSE, agent_a, reason="deploy", pause_minutes=30, mode="now")
    agent = Agent.objects.get()
    assert agent.pause_reason == "deploy" and agent.pause_mode == "now"
    assert agent.pause_until is not None
    assert before + timedelta(minutes=30) <= agent.pause_until <= timezone.now() + timedelta(minutes=30)
    run(tenant_a, operator_a, Action.RESUME, agent_a)
    agent.refresh_from_db()
    assert (agent.pause_reason, agent.pause_until, agent.pause_mode) == ("", None, "after_task")


def test_a_pause_whose_time_is_up_resumes_by_itself_as_the_system(tenant_a, operator_a, agent_a):
    run(tenant_a, operator_a, Action.PAUSE, agent_a, pause_minutes=15)
    assert control_resume_expired() == 0  # not yet
    Agent.objects.update(pause_until=timezone.now() - timedelta(seconds=1))
    assert control_resume_expired() == 1
    agent = Agent.objects.get()
    assert agent.desired_state == DesiredState.RUNNING and agent.pause_until is None
    entry = AuditEntry.objects.order_by("-id").first()
    assert entry is not None
    assert (entry.action, entry.outcome, entry.actor_label, entry.actor) == ("agent.resume", "success", "system", None)
    assert control_resume_expired() == 0


@pytest.mark.parametrize(
    "options, says",
    [
        ({"pause_minutes": 0}, "minutes"),
        ({"pause_minutes": 10_081}, "minutes"),
        ({"pause_minutes": "30"}, "minutes"),
        ({"pause_until": datetime(2030, 1, 1)}, "zone"),  # noqa: DTZ001 - the naive time under test
        ({"pause_until": datetime(2020, 1, 1, tzinfo=UTC)}, "future"),
        ({"pause_until": datetime.now(UTC) + timedelta(days=8)}, "7 days"),
        ({"pause_minutes": 5, "pause_until": datetime.now(UTC) + timedelta(hours=1)}, "not both"),
        ({"mode": "eventually"}, "mode"),
    ],
)
def test_a_bad_pause_hold_is_refused_and_changes_nothing(tenant_a, operator_a, agent_a, options, says):
    error = refused("E10311", tenant_a, operator_a, Action.PAUSE, agent_a, **options)
    assert says in error.message
    assert Agent.objects.get().desired_state == DesiredState.RUNNING


# --- an emergency stop the agent does not confirm ---------------------------------------


def test_an_unconfirmed_stop_is_flagged_once_with_a_critical_event(tenant_a, admin_a, agent_a):
    from events.models import Event
    from fleet.liveness import agents_flag_unconfirmed_stops

    run(tenant_a, admin_a, Action.STOP, agent_a, reason="incident")
    assert agents_flag_unconfirmed_stops() == []  # within its deadline
    later = timezone.now() + timedelta(minutes=5)
    assert agents_flag_unconfirmed_stops(now=later) == [agent_a.pk]
    assert agents_flag_unconfirmed_stops(now=later) == []  # once
    event = Event.objects.get(type="agent.stop_unconfirmed")
    assert (event.severity, event.agent_id) == ("critical", agent_a.pk)
    assert Agent.objects.get().stop_unconfirmed_at == later
    # A restart clears it.
    run(tenant_a, admin_a, Action.RESTART, agent_a)
    assert Agent.objects.get().stop_unconfirmed_at is None


def test_a_confirmed_stop_is_not_flagged(tenant_a, admin_a, agent_a):
    from fleet.liveness import agents_flag_unconfirmed_stops

    run(tenant_a, admin_a, Action.STOP, agent_a, reason="incident")
    Agent.objects.update(observed_state="stopped")
    assert agents_flag_unconfirmed_stops(now=timezone.now() + timedelta(minutes=5)) == []


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"reason": "why\x00"}, "E10310"),
        ({"reason": "\ud800"}, "E10310"),
        ({"reason": "bell\x07"}, "E10310"),
        ({"reason": "ok", "idempotency_key": "k\x00"}, "E10308"),
        ({"reason": "ok", "pause_until": datetime(1, 1, 1, 0, 30, tzinfo=timezone.get_fixed_timezone(60))}, "E10311"),
    ],
)
def test_text_the_database_cannot_hold_is_refused_before_it_is_written(tenant_a, admin_a, agent_a, options, code):
    # The Python API reaches the service without the JSON API's field types: the service's
    # own checks (control/rules.py) apply core/inputs.py's rules too.
    refused(code, tenant_a, admin_a, Action.PAUSE, agent_a, **options)
    agent_a.refresh_from_db()
    assert agent_a.desired_state == DesiredState.RUNNING
    assert not AuditEntry.objects.filter(outcome=Outcome.SUCCESS).exists()
    # The refusal is on the record, with what it sent made storable.
    entry = AuditEntry.objects.get()
    assert entry.error_code == code
    assert entry.reason == options["reason"].translate({0: "\ufffd", 7: "\ufffd", 0xD800: "\ufffd"})


@pytest.mark.parametrize("ref", ["acme\x00", "9" * 40, "١"])
def test_a_tenant_named_with_text_no_tenant_has_is_not_found(admin_a, agent_a, ref):
    with pytest.raises(InterfaceError) as caught:
        async_to_sync(ControlService().pause_agent)(
            agent_id=str(agent_a.pk), tenant_id=ref, user_id=admin_a.username, reason="x"
        )
    assert str(caught.value.code) == "E10005"


def test_the_python_api_finds_a_user_by_any_spelling_of_the_name(tenant_a, admin_a, agent_a):
    # Usernames are stored normalised (NFKC, case-folded): "ＡＤＭＩＮ-Ａ" names admin-a.
    spelled = admin_a.username.upper().translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)})
    result = async_to_sync(ControlService().pause_agent)(
        agent_id=str(agent_a.pk), tenant_id=tenant_a.slug, user_id=spelled, reason="by any name"
    )
    assert result.status == ControlStatus.SUCCESS
