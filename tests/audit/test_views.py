"""The trail page, an entry's page, the agent page's audit card, and the export: CSV and
JSON Lines with the chain fields, verifiable away from the console, at bounded memory."""

from __future__ import annotations

import csv
import io
import json
import re
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from audit import chain, export, selectors
from audit.models import AuditEntry, AuditPending, Outcome
from audit.services import SYSTEM, Actor, Entry, audit_record
from tests.conftest import client_for

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
DOC = Path(__file__).resolve().parents[2] / "docs" / "audit.md"


def record(tenant, n: int, **fields) -> int:
    made = {"action": "agent.pause", "resource_type": "agent", "resource_id": "worker-1", "outcome": Outcome.SUCCESS}
    return audit_record(
        tenant_id=tenant.pk, actor=fields.pop("actor", SYSTEM), entry=Entry(**{**made, **fields}),
        at=T0 + timedelta(minutes=n),
    )  # fmt: skip


@pytest.fixture
def trail(tenant_a, tenant_b, operator_a):
    ids = [
        record(tenant_a, 1, actor=Actor(user=operator_a, ip="10.0.0.7"), reason="night maintenance",
               delta={"desired_state": {"from": "running", "to": "paused"}}),
        record(tenant_a, 2, action="agent.resume", delta={"desired_state": {"from": "paused", "to": "running"}}),
        record(tenant_a, 3, outcome=Outcome.DENIED, error_code="E10004", resource_id="worker-2"),
    ]  # fmt: skip
    record(tenant_b, 4, resource_id="their-agent")
    return ids


def test_admins_read_their_tenants_trail_newest_first_and_filter_it(tenant_a, admin_a, trail):
    client = client_for(admin_a)
    page = client.get(f"/t/{tenant_a.slug}/audit/").content.decode()
    signed_in = AuditEntry.objects.get(tenant=tenant_a, action="auth.login", actor=admin_a).pk  # the test's own
    rows = re.findall(r'<tr id="entry-(\d+)"', page)
    assert rows == [str(signed_in), *(str(pk) for pk in reversed(trail))] and "their-agent" not in page
    assert "4 entries." in page and "night maintenance" in page
    denied = client.get(f"/t/{tenant_a.slug}/audit/?outcome=denied").content.decode()
    assert re.findall(r'<tr id="entry-(\d+)"', denied) == [str(trail[2])] and "E10004" in denied
    assert "1 entry match." in denied


def test_older_pages_follow_the_cursor(tenant_a, admin_a, trail):
    client = client_for(admin_a)
    first = client.get(f"/t/{tenant_a.slug}/audit/?action=agent.*&limit=2").content.decode()
    older = re.search(r'href="([^"]*cursor=[^"]*)" data-testid="older"', first)
    assert older is not None
    assert older.group(1).startswith("?action=agent.%2A&amp;limit=2&amp;cursor=")  # the filters kept, the page moved
    second = client.get(f"/t/{tenant_a.slug}/audit/" + older.group(1).replace("&amp;", "&")).content.decode()
    assert re.findall(r'<tr id="entry-(\d+)"', second) == [str(trail[0])] and 'data-testid="older"' not in second


@pytest.mark.parametrize(
    ("query", "code", "field_id"),
    [
        ("start_time=last+tuesday", "E10502", "audit-start"),
        ("start_time=2026-11-30&end_time=2026-11-01", "E10503", "audit-end"),
        ("cursor=forged", "E10506", None),
        ("actor=" + "x" * 151, "E10501", "audit-actor"),
    ],
)
def test_a_bad_filter_is_refused_beside_its_field(tenant_a, admin_a, trail, query, code, field_id):
    response = client_for(admin_a).get(f"/t/{tenant_a.slug}/audit/?{query}")
    page = response.content.decode()
    assert response.status_code == 400 and code in page and 'role="alert"' in page
    if field_id:
        assert re.search(rf'id="{field_id}"[^>]*aria-invalid="true"', page)


def test_an_entry_shows_its_change_and_its_place_in_the_chain(tenant_a, tenant_b, admin_a, trail, settings):
    client = client_for(admin_a)
    url = f"/t/{tenant_a.slug}/audit/{trail[0]}/"
    page = client.get(url).content.decode()
    assert "waiting for the sealer" in page and "10.0.0.7" in page
    assert re.search(r"<th scope=\"row\">desired_state</th><td>running</td><td>paused</td>", page)
    chain.seal()
    sealed = client.get(url).content.decode()
    current = next(iter(settings.AUDIT_KEYS))
    assert "link 1 of the tenant's chain" in sealed and f"key <code>{current}</code>" in sealed
    theirs = AuditEntry.objects.get(tenant=tenant_b).pk
    assert client.get(f"/t/{tenant_a.slug}/audit/{theirs}/").status_code == 404


def test_the_agent_page_shows_admins_the_agents_audit(tenant_a, admin_a, operator_a, agent_a):
    record(tenant_a, 1, resource_id=agent_a.external_id, reason="by external id")
    record(tenant_a, 2, resource_id=str(agent_a.pk), reason="by uuid")
    record(tenant_a, 3, resource_id="someone-else", reason="another agent")
    page = client_for(admin_a).get(f"/t/{tenant_a.slug}/agents/{agent_a.pk}/").content.decode()
    card = page[page.index('data-testid="agent-audit"') :]
    assert "by external id" in card and "by uuid" in card and "another agent" not in card
    link = re.search(r'href="([^"]*/audit/\?resource_type=agent[^"]*)"', card)
    assert link is not None
    listing = client_for(admin_a).get(link.group(1).replace("&amp;", "&")).content.decode()
    assert "by external id" in listing and "by uuid" in listing and "another agent" not in listing
    assert (
        'data-testid="agent-audit"'
        not in client_for(operator_a).get(f"/t/{tenant_a.slug}/agents/{agent_a.pk}/").content.decode()
    )


def download(client, tenant, query: str) -> str:
    response = client.get(f"/t/{tenant.slug}/audit/export/?{query}")
    assert response.status_code == 200 and response.streaming and response["Cache-Control"] == "no-store"
    return b"".join(response.streaming_content).decode()


def test_exports_hold_the_filtered_trail_oldest_first_with_chain_fields_and_are_audited(tenant_a, admin_a, trail):
    chain.seal()
    client = client_for(admin_a)
    lines = download(client, tenant_a, "format=jsonl&action=agent.*").splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["id"] for r in rows] == trail and all(r["tenant_id"] == tenant_a.pk for r in rows)
    assert rows[0]["prev_mac"] == "" and rows[1]["prev_mac"] == rows[0]["mac"] and rows[0]["seq"] == 1
    assert rows[0]["delta"] == {"desired_state": {"from": "running", "to": "paused"}}
    exported = AuditEntry.objects.get(action="audit.export")
    assert exported.delta == {"format": "jsonl", "filters": {"action": "agent.*"}}
    text = download(client, tenant_a, "format=csv&outcome=denied")
    table = list(csv.DictReader(io.StringIO(text)))
    assert [int(r["id"]) for r in table] == [trail[2]] and table[0]["error_code"] == "E10004"
    assert list(table[0]) == list(export.FIELDS)
    assert client.get(f"/t/{tenant_a.slug}/audit/export/?format=xml").status_code == 400


def test_an_export_verifies_away_from_the_console_and_an_edit_is_found(tenant_a, admin_a, trail, tmp_path, settings):
    chain.seal()
    record(tenant_a, 9, reason="after the sealer ran")  # exported unsealed
    client = client_for(admin_a)
    for kind in ("jsonl", "csv"):
        path = tmp_path / f"audit.{kind}"
        path.write_text(download(client, tenant_a, f"format={kind}"), encoding="utf-8")
        waiting = AuditPending.objects.count()  # the late entry, and each export's own entry
        out = io.StringIO()
        call_command("verify_audit", "--export", str(path), stdout=out)
        assert (
            f"OK, 3 entries verified; 0 places of the chains are not in this export; {waiting} were not sealed yet"
            in out.getvalue()
        )
        head = chain.verify(tenant_a.pk).head
        assert f"tenant {tenant_a.pk}: last link {head}" in out.getvalue()
    edited = tmp_path / "edited.jsonl"
    text = (tmp_path / "audit.jsonl").read_text(encoding="utf-8")
    edited.write_text(text.replace("night maintenance", "routine check"), encoding="utf-8")
    with pytest.raises(CommandError, match=f"BROKEN at entry {trail[0]}: entry {trail[0]} \\(link 1\\) does not match"):
        call_command("verify_audit", "--export", str(edited))
    # The documented stdlib-only procedure, as written, with this run's keys and file.
    code = re.search(r"```python\n(import hashlib.*?)```", DOC.read_text(), re.S)
    assert code is not None
    program = code.group(1)
    program = re.sub(r"^KEYS = .*$", f"KEYS = {dict(settings.AUDIT_KEYS)!r}", program, flags=re.M)
    printed: list[str] = []
    for path, expected in ((tmp_path / "audit.jsonl", "3 entries verified"), (edited, None)):
        source = re.sub(r"^EXPORT = .*$", f"EXPORT = {str(path)!r}", program, flags=re.M)
        if expected:
            exec(source, {"print": printed.append})  # noqa: S102 - our own documentation
            assert printed == [expected]
        else:
            with pytest.raises(SystemExit, match="does not match its MAC"):
                exec(source, {"print": printed.append})  # noqa: S102


def test_the_export_reads_a_chunk_at_a_time_whatever_the_size_of_the_trail(tenant_a):
    def make(count: int) -> None:
        AuditEntry.objects.bulk_create(
            [
                AuditEntry(
                    tenant=tenant_a, occurred_at=T0, actor_label="system", action="agent.pause", resource_type="agent",
                    resource_id=f"worker-{n}", reason="r" * 200, delta={"n": n}, outcome="success",
                )
                for n in range(count)
            ],
            batch_size=2000,
        )  # fmt: skip

    def peak() -> tuple[int, int]:
        tracemalloc.start()
        lines = 0
        for _ in export.jsonl(export.rows(tenant_a.pk, selectors.AuditFilter(), chunk=500)):
            lines += 1
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return lines, top

    make(2_000)
    small = peak()
    make(18_000)
    large = peak()
    assert small[0] == 2_000 and large[0] == 20_000
    # Ten times the rows, about the same memory: one chunk of 500 rows, not the whole trail.
    assert large[1] < small[1] * 1.5 + 256 * 1024, (small, large)
