"""Control's plain statements against their portable twins, on the same PostgreSQL data."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction

from control import sql
from control.models import IdempotencyRecord
from core.errors import InterfaceError
from fleet.models import Agent, DesiredState
from tests.factories import AgentFactory
from tests.parity import parity

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
PATHS = ("plain", "portable")


def _seen(found: tuple[Agent, str | None] | None) -> tuple[object, ...] | None:
    if found is None:
        return None
    agent, role = found
    fields = (agent.pk, agent.tenant_id, agent.external_id, agent.name, agent.version, agent.desired_state)
    return (*fields, agent.tenant.pk, agent.tenant.slug, agent.tenant.name, role)


@parity(sql.target)
def test_both_target_reads_give_the_agent_its_tenant_and_the_callers_role(
    tenant_a, operator_a, viewer_a, operator_b, agent_a
):
    cases = [
        (agent_a.pk, operator_a.pk, "operator"),
        (agent_a.pk, viewer_a.pk, "viewer"),
        (agent_a.pk, operator_b.pk, None),  # another tenant's member: no role here
        (agent_a.pk, None, None),  # the system
    ]
    for agent_id, user_id, role in cases:
        plain, portable = sql.target.plain(agent_id, user_id), sql.target.portable(agent_id, user_id)
        assert _seen(plain) == _seen(portable)
        assert _seen(plain) == (
            agent_a.pk, tenant_a.pk, "worker-1", "Worker 1", 1, "running", tenant_a.pk, "acme", "Acme", role,
        )  # fmt: skip
    nobody = uuid.uuid4()
    assert sql.target.plain(nobody, operator_a.pk) is None and sql.target.portable(nobody, operator_a.pk) is None


@parity(sql.lock)
def test_both_locks_refresh_what_a_decision_reads(tenant_a):
    agent = AgentFactory.create(
        tenant=tenant_a, desired_state=DesiredState.PAUSED, version=4, quotas={"tokens": {"day": 9}}
    )
    for path in PATHS:
        stale = Agent(pk=agent.pk, tenant_id=tenant_a.pk, desired_state="running", version=1, quotas={}, name="kept")
        with transaction.atomic():
            locked = getattr(sql.lock, path)(stale)
            assert locked is stale
            assert (stale.desired_state, stale.version, stale.quotas, stale.name) == (
                "paused", 4, {"tokens": {"day": 9}}, "kept",
            )  # fmt: skip
    gone = Agent(pk=uuid.uuid4(), tenant_id=tenant_a.pk)
    for path in PATHS:
        with pytest.raises(InterfaceError, match="removed"), transaction.atomic():
            getattr(sql.lock, path)(gone)


def _record(found: IdempotencyRecord | None) -> tuple[object, ...] | None:
    if found is None:
        return None
    return (found.pk, found.tenant_id, found.caller, found.key, found.fingerprint, found.status_code,
            found.response, found.created_at, found.expires_at)  # fmt: skip


@parity(sql.stored_answer)
def test_both_stored_answer_reads_agree(tenant_a):
    answer = {"status": "success", "version": 2}
    IdempotencyRecord.objects.create(
        tenant=tenant_a, caller="user:1", key="k", fingerprint="f" * 64, status_code=200, response=answer,
        created_at=T0, expires_at=T0 + timedelta(days=1),
    )  # fmt: skip
    found = sql.stored_answer.plain(tenant_a.pk, "user:1", "k")
    assert _record(found) == _record(sql.stored_answer.portable(tenant_a.pk, "user:1", "k"))
    assert found is not None and found.response == answer
    for caller, key in (("user:2", "k"), ("user:1", "other")):
        assert sql.stored_answer.plain(tenant_a.pk, caller, key) is None
        assert sql.stored_answer.portable(tenant_a.pk, caller, key) is None


@parity(sql.claim)
def test_both_claims_take_a_new_key_replace_an_expired_one_and_refuse_a_live_one(tenant_a):
    later = T0 + timedelta(days=2)
    results = {}
    for path in PATHS:
        claim = getattr(sql.claim, path)
        caller = f"user:{path}"
        with transaction.atomic():
            results[path] = [
                claim(tenant_a.pk, caller, "k", "a" * 64, {"n": 1}, T0, T0 + timedelta(days=1)),
                claim(tenant_a.pk, caller, "k", "b" * 64, {"n": 2}, T0, T0 + timedelta(days=1)),  # live: refused
                claim(tenant_a.pk, caller, "k", "c" * 64, {"n": 3}, later, later + timedelta(days=1)),  # expired
            ]
    assert results["plain"] == results["portable"] == [True, False, True]
    rows = {
        path: IdempotencyRecord.objects.filter(caller=f"user:{path}").values_list(
            "key", "fingerprint", "status_code", "response", "created_at", "expires_at"
        )
        for path in PATHS
    }
    assert (
        list(rows["plain"])
        == list(rows["portable"])
        == [("k", "c" * 64, 200, {"n": 3}, later, later + timedelta(days=1))]
    )
