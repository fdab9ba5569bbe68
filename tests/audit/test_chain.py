"""The audit trail's keyed hash chain (audit/chain.py): sealing, and a verifier that finds
an edit, a deletion, a reordering, a truncation against a checkpoint, an entry written
around the trail, and a key it does not hold."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection, connections, transaction

from audit import chain
from audit.models import AppendOnly, AuditEntry, AuditPending, AuditSeal, Outcome
from audit.services import SYSTEM, Actor, Entry, audit_record

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
KEY_ONE = "t1-key-one-for-the-chain-tests-0123456789"
KEY_TWO = "t2-key-two-for-the-chain-tests-0123456789"


@pytest.fixture(autouse=True)
def keys(settings):
    settings.AUDIT_KEYS = {"t1": KEY_ONE}
    return settings


def write(tenant, n: int, *, actor: Actor = SYSTEM, start: int = 0) -> list[int]:
    """``n`` entries through the console's own write path; their ids."""
    for i in range(start, start + n):
        entry = Entry(
            action="agent.pause", resource_type="agent", resource_id=f"worker-{i}", outcome=Outcome.SUCCESS,
            reason=f"maintenance {i}", delta={"desired_state": {"from": "running", "to": "paused"}, "n": i * 0.5},
        )  # fmt: skip
        audit_record(tenant_id=tenant.pk, actor=actor, entry=entry, at=T0 + timedelta(seconds=i))
    return list(AuditEntry.objects.filter(tenant=tenant).order_by("pk").values_list("pk", flat=True))


def tamper(statement: str, params: list | None = None) -> None:
    """Change the stored trail as someone with database access would: with every trigger
    off for the session (PostgreSQL's replica role), which the console never does."""
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(statement, params or [])


def test_every_entry_waits_for_the_sealer_whoever_writes_it(tenant_a):
    write(tenant_a, 2)
    orm = AuditEntry.objects.create(
        tenant=tenant_a, occurred_at=T0, actor_label="sam", action="x", resource_type="agent", resource_id="a",
        outcome="success",
    )  # fmt: skip
    assert AuditPending.objects.count() == 3 and AuditPending.objects.filter(entry=orm).exists()
    assert AuditSeal.objects.count() == 0


def test_the_sealer_chains_each_tenants_entries_in_id_order_from_one(tenant_a, tenant_b):
    ids_a = write(tenant_a, 3)
    ids_b = write(tenant_b, 2)
    assert chain.seal(now=T0) == 5
    assert not AuditPending.objects.exists()
    seals = list(AuditSeal.objects.order_by("tenant_id", "seq").values_list("tenant_id", "seq", "entry_id", "key_id"))
    assert seals == [(tenant_a.pk, n + 1, pk, "t1") for n, pk in enumerate(ids_a)] + [
        (tenant_b.pk, n + 1, pk, "t1") for n, pk in enumerate(ids_b)
    ]
    more = write(tenant_a, 2, start=3)[3:]
    assert chain.seal(now=T0) == 2 and chain.seal(now=T0) == 0
    assert list(AuditSeal.objects.filter(entry_id__in=more).order_by("seq").values_list("seq", flat=True)) == [4, 5]
    verdict = chain.verify(tenant_a.pk)
    assert verdict.ok and verdict.links == 5 and verdict.keys == {"t1"} and verdict.pending == 0
    assert verdict.head == chain.Checkpoint(5, AuditSeal.objects.get(tenant=tenant_a, seq=5).mac)


def test_a_link_is_the_documented_hmac_of_the_entry_and_the_previous_link(tenant_a, operator_a):
    first, second = write(
        tenant_a, 2, actor=Actor(user=operator_a, ip="10.1.2.3", user_agent="pytest", request_id="r1")
    )
    chain.seal(now=T0)
    entry = AuditEntry.objects.get(pk=second)
    content = {
        "id": second, "tenant_id": tenant_a.pk, "occurred_at": "2026-11-30T12:00:01.000000+00:00",
        "actor_id": operator_a.pk, "actor_label": operator_a.username, "ip": "10.1.2.3", "user_agent": "pytest",
        "action": "agent.pause", "resource_type": "agent", "resource_id": "worker-1", "reason": "maintenance 1",
        "delta": {"desired_state": {"from": "running", "to": "paused"}, "n": 0.5}, "outcome": "success",
        "error_code": "", "idempotency_key": "", "request_id": "r1", "batch_id": None,
    }  # fmt: skip
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    previous = AuditSeal.objects.get(entry_id=first).mac
    expected = hmac.new(KEY_ONE.encode(), f"t1\n2\n{previous}\n".encode() + text, hashlib.sha256).hexdigest()
    assert entry.seal.mac == expected and entry.seal.seq == 2


@pytest.fixture
def sealed(tenant_a) -> list[int]:
    ids = write(tenant_a, 6)
    chain.seal(now=T0)
    return ids


def test_an_edited_entry_breaks_the_chain_at_that_entry(tenant_a, sealed):
    tamper("UPDATE audit_auditentry SET reason = 'nothing to see' WHERE id = %s", [sealed[2]])
    verdict = chain.verify(tenant_a.pk)
    assert not verdict.ok and verdict.entry_id == sealed[2] and "does not match its MAC" in verdict.problem
    assert verdict.links == 2


def test_a_deleted_entry_is_found_with_or_without_its_link(tenant_a, sealed):
    tamper("DELETE FROM audit_auditentry WHERE id = %s", [sealed[1]])
    verdict = chain.verify(tenant_a.pk)
    assert verdict.entry_id == sealed[1] and "is gone" in verdict.problem
    tamper("DELETE FROM audit_auditseal WHERE entry_id = %s", [sealed[1]])
    verdict = chain.verify(tenant_a.pk)
    assert "link 2 is missing (the next is 3)" in verdict.problem and verdict.links == 1


def test_reordered_entries_break_the_chain(tenant_a, sealed):
    # Swap two entries' places: each link then names the other entry.
    tamper("UPDATE audit_auditseal SET seq = seq + 1000 WHERE entry_id IN (%s, %s)", [sealed[3], sealed[4]])
    tamper("UPDATE audit_auditseal SET seq = 5 WHERE seq = 1004")
    tamper("UPDATE audit_auditseal SET seq = 4 WHERE seq = 1005")
    verdict = chain.verify(tenant_a.pk)
    assert not verdict.ok and verdict.entry_id == sealed[4] and "does not match its MAC" in verdict.problem


def test_deleting_the_newest_entries_is_found_against_a_checkpoint(tenant_a, sealed):
    kept = chain.verify(tenant_a.pk).head
    assert kept is not None and kept.seq == 6
    for pk in sealed[4:]:
        tamper("DELETE FROM audit_auditseal WHERE entry_id = %s", [pk])
        tamper("DELETE FROM audit_auditentry WHERE id = %s", [pk])
    assert chain.verify(tenant_a.pk).ok  # a shorter chain is still a chain
    verdict = chain.verify(tenant_a.pk, checkpoint=kept)
    assert "ends at link 4, before the checkpoint's link 6" in verdict.problem
    forged = chain.Checkpoint(3, "0" * 64)
    assert "not the checkpoint's" in chain.verify(tenant_a.pk, checkpoint=forged).problem


def test_an_entry_written_around_the_trail_is_found(tenant_a, sealed):
    tamper(
        "INSERT INTO audit_auditentry (tenant_id, occurred_at, actor_label, user_agent, action, resource_type,"
        " resource_id, reason, delta, outcome, error_code, idempotency_key, request_id)"
        " VALUES (%s, %s, 'mallory', '', 'x', 'agent', 'a', '', '{}', 'success', '', '', '')",
        [tenant_a.pk, T0],
    )
    sneaked = AuditEntry.objects.order_by("-pk").first()
    assert sneaked is not None
    tamper("DELETE FROM audit_auditpending WHERE entry_id = %s", [sneaked.pk])  # SQLite's trigger has no off switch
    verdict = chain.verify(tenant_a.pk)
    assert verdict.entry_id == sneaked.pk and "neither sealed nor waiting" in verdict.problem


def test_rotated_keys_keep_old_links_verifying_and_a_dropped_key_is_named(tenant_a, keys):
    write(tenant_a, 2)
    chain.seal(now=T0)
    keys.AUDIT_KEYS = {"t2": KEY_TWO, "t1": KEY_ONE}  # t2 is now the current key
    write(tenant_a, 2, start=2)
    chain.seal(now=T0)
    assert list(AuditSeal.objects.order_by("seq").values_list("key_id", flat=True)) == ["t1", "t1", "t2", "t2"]
    verdict = chain.verify(tenant_a.pk)
    assert verdict.ok and verdict.keys == {"t1", "t2"}
    keys.AUDIT_KEYS = {"t2": KEY_TWO}
    assert "key 't1', which L10_AUDIT_KEYS does not list" in chain.verify(tenant_a.pk).problem
    keys.AUDIT_KEYS = {"t2": KEY_ONE, "t1": KEY_ONE}  # the right id, the wrong secret
    assert "does not match its MAC" in chain.verify(tenant_a.pk).problem


def test_entries_stay_append_only_in_the_orm(tenant_a, sealed):
    entry = AuditEntry.objects.get(pk=sealed[0])
    entry.reason = "rewritten"
    for attempt in (
        entry.save,
        entry.delete,
        lambda: AuditEntry.objects.filter(pk=entry.pk).update(reason="x"),
        lambda: AuditEntry.objects.filter(pk=entry.pk).delete(),
        lambda: AuditSeal.objects.filter(entry_id=entry.pk).update(seq=99),
        lambda: AuditSeal.objects.get(entry_id=entry.pk).delete(),
    ):
        with pytest.raises(AppendOnly):
            attempt()
    assert AuditEntry.objects.get(pk=entry.pk).reason == "maintenance 0" and chain.verify(tenant_a.pk).ok


def test_deleting_an_account_keeps_its_entries_and_the_chain(tenant_a, operator_a):
    write(tenant_a, 2, actor=Actor(user=operator_a))
    chain.seal(now=T0)
    pk = operator_a.pk
    User.objects.filter(pk=pk).delete()
    assert list(AuditEntry.objects.values_list("actor_id", flat=True)) == [pk, pk]
    assert chain.verify(tenant_a.pk).ok


def verify_command(*args: str) -> str:
    out = io.StringIO()
    call_command("verify_audit", *args, stdout=out)
    return out.getvalue()


def test_the_command_prints_each_chain_and_its_checkpoint_and_fails_on_a_break(tenant_a, tenant_b, sealed):
    write(tenant_b, 1)
    text = verify_command()
    head = chain.verify(tenant_a.pk).head
    assert f"{tenant_a.slug}: OK, 6 entries chained (keys: t1)\n  checkpoint: {head}" in text
    assert f"{tenant_b.slug}: OK, 0 entries chained (keys: none)\n  1 newer entries wait for the sealer" in text
    assert "checkpoint" in verify_command("--tenant", tenant_a.slug, "--checkpoint", str(head))
    tamper("UPDATE audit_auditentry SET action = 'agent.resume' WHERE id = %s", [sealed[5]])
    with pytest.raises(CommandError, match="1 of 1 audit chains are broken"):
        verify_command("--tenant", tenant_a.slug)
    for args, message in [
        (("--checkpoint", str(head)), "name it with --tenant"),
        (("--tenant", tenant_a.slug, "--checkpoint", "6:nothex"), "a checkpoint is <seq>:<64 hex digits"),
        (("--tenant", "nobody"), "No tenant has the slug 'nobody'"),
    ]:
        with pytest.raises(CommandError, match=message):
            verify_command(*args)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # committed rows: TRUNCATE waits for no deferred check
def test_the_seal_table_refuses_update_delete_and_truncate(tenant_a, sealed):
    for statement in ("UPDATE audit_auditseal SET seq = seq + 100", "DELETE FROM audit_auditseal"):
        with pytest.raises(Exception, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement)
    with (
        pytest.raises(Exception, match="TRUNCATE is not allowed"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SET LOCAL l10.audit_truncate = ''")
        cursor.execute("TRUNCATE audit_auditseal")
    assert AuditSeal.objects.count() == 6


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_sealers_at_once_chain_every_entry_once(tenant_a):
    write(tenant_a, 300)
    barrier = threading.Barrier(2)
    counts: list[int] = []
    errors: list[BaseException] = []

    def sealer() -> None:
        try:
            barrier.wait(timeout=10)
            sealed, deadline = 0, time.monotonic() + 60
            # Until nothing waits: a turn that finds the other sealer at work seals nothing.
            while AuditPending.objects.filter(tenant=tenant_a).exists() and time.monotonic() < deadline:
                sealed += chain.seal_tenant(tenant_a.pk, limit=50)
            counts.append(sealed)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=sealer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and sum(counts) == 300
    assert list(AuditSeal.objects.order_by("seq").values_list("seq", flat=True)) == list(range(1, 301))
    assert chain.verify(tenant_a.pk).ok
