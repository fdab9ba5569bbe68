"""The audit trail at a million entries (docs/audit.md; docs/performance.md, "The audit
trail"): writing an entry, sealing the backlog, exporting it, verifying it.

- Data: after ``migrate``, one tenant (through the app's own code) and ``ENTRIES`` entries
  written by one ``INSERT … SELECT generate_series`` as the console writes them: control
  actions mostly, with reasons, deltas, request ids and one in ten from an address; the
  trigger lists each as pending, as it does for every insert.
- Write: ``audit.services.audit_record`` in a transaction already begun (as a control
  operation's is by its lock and read), ``WRITES`` times: what a control operation gains by
  its entry (the sealing is not on this path). Floor: a ``SELECT 1`` in the same transaction.
- Seal: ``audit.chain.seal`` in this process until nothing is pending: the rate at which a
  backlog (a million entries, as after a migration) is chained. Floor: reading the same
  rows with psycopg's ``COPY … TO STDOUT``.
- Export: a process of its own on core 0 streams the whole trail as JSON Lines through
  ``audit.export`` (what the export view sends) to /dev/null and reports its rate and its
  peak memory (``ru_maxrss``). Targets: over 50,000 rows/s, under 150 MB. Floor: ``COPY``
  of the same rows with their chain fields.
- Verify: ``audit.chain.verify`` of the whole chain (no target): what ``verify_audit`` costs.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time

from bench import bench_fanout, common
from bench.common import Row

ENTRIES = common.sized(1_000_000, 5_000)
WRITES = common.sized(2_000, 100)
EXPORT_ROWS_PER_S = 50_000
EXPORT_MB = 150
WRITE_MS = 1.0

SEED_SQL = """
INSERT INTO audit_auditentry (tenant_id, occurred_at, actor_id, actor_label, ip, user_agent, action, resource_type,
    resource_id, reason, delta, outcome, error_code, idempotency_key, request_id, batch_id)
SELECT %(tenant)s, now() - (%(n)s - g) * interval '100 milliseconds', NULL, 'oscar',
    CASE WHEN g %% 10 = 0 THEN '10.0.' || (g %% 250) || '.' || (g %% 200) END::inet, 'Mozilla/5.0 (X11; Linux x86_64)',
    (ARRAY['agent.pause', 'agent.resume', 'agent.stop', 'agent.quota', 'alert.acknowledge'])[1 + g %% 5], 'agent',
    'worker-' || (g %% 5000), CASE WHEN g %% 3 = 0 THEN 'maintenance window ' || (g %% 97) ELSE '' END,
    jsonb_build_object('desired_state', jsonb_build_object('from', 'running', 'to', 'paused'), 'version',
        jsonb_build_object('from', g, 'to', g + 1)),
    CASE WHEN g %% 50 = 0 THEN 'denied' ELSE 'success' END, CASE WHEN g %% 50 = 0 THEN 'E10004' ELSE '' END,
    'key-' || g, md5(g::text), NULL
FROM generate_series(1, %(n)s) AS g
"""
READ_SQL = "COPY (SELECT * FROM audit_auditentry WHERE tenant_id = {tenant}) TO STDOUT"
EXPORT_SQL = """
COPY (SELECT e.*, s.seq, s.key_id, p.mac, s.mac FROM audit_auditentry e
    LEFT JOIN audit_auditseal s ON s.entry_id = e.id
    LEFT JOIN audit_auditseal p ON p.tenant_id = s.tenant_id AND p.seq = s.seq - 1
    WHERE e.tenant_id = {tenant} ORDER BY e.id) TO STDOUT
"""
EXPORT_CHILD = """
import json, resource, sys, time
from bench import bench_fanout
bench_fanout.django_setup()
from audit import export, selectors
started, rows = time.perf_counter(), 0
with open("/dev/null", "w") as sink:
    for line in export.jsonl(export.rows(int(sys.argv[1]), selectors.AuditFilter())):
        sink.write(line)
        rows += 1
print(json.dumps({"rows": rows, "seconds": time.perf_counter() - started,
                  "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _seed() -> int:
    common.recreate_database()
    seed = common.seed_tenant("audit")
    with common.pg_connect(autocommit=True) as conn:
        conn.execute(SEED_SQL, {"tenant": seed.tenant_id, "n": ENTRIES})
        conn.execute("VACUUM ANALYZE")
        counted = conn.execute("SELECT count(*) FROM audit_auditpending WHERE tenant_id = %s", [seed.tenant_id])
        row = counted.fetchone()
    if row is None or row[0] < ENTRIES:
        raise AssertionError(f"{row} entries wait for the sealer, not {ENTRIES}")
    return seed.tenant_id


def _copy_rate(statement: str) -> tuple[int, float]:
    with common.pg_connect() as conn:
        started, rows = time.perf_counter(), 0
        with conn.cursor().copy(statement) as copy:
            for _ in copy.rows():
                rows += 1
        return rows, time.perf_counter() - started


def _writes(tenant_id: int) -> tuple[list[float], list[float]]:
    from django.db import connection, transaction

    from audit.models import Outcome
    from audit.services import SYSTEM, Entry, audit_record

    entry = Entry(
        action="agent.pause", resource_type="agent", resource_id="worker-1", outcome=Outcome.SUCCESS,
        reason="bench", delta={"desired_state": {"from": "running", "to": "paused"}},
    )  # fmt: skip
    writes, floors = [], []
    for _ in range(WRITES):
        with transaction.atomic(), connection.cursor() as cursor:
            # A control operation's transaction has begun (its lock, its read) before its
            # entry is written: the BEGIN is not the entry's cost.
            cursor.execute("SELECT 1")
            started = time.perf_counter()
            audit_record(tenant_id=tenant_id, actor=SYSTEM, entry=entry)
            writes.append(time.perf_counter() - started)
            started = time.perf_counter()
            cursor.execute("SELECT 1")
            floors.append(time.perf_counter() - started)
    return writes, floors


def run() -> list[Row]:
    pinning = common.pin_client()
    bench_fanout.django_setup()
    bench_fanout.drop_django_connections()
    common.progress(f"seeding {ENTRIES:,} audit entries")
    tenant_id = _seed()
    bench_fanout.drop_django_connections()  # the database was made again under this process's connection

    from audit import chain
    from audit.models import AuditEntry, AuditPending

    writes, write_floors = _writes(tenant_id)
    # The seeded entries, the writes, and what the console wrote itself (the tenant's token).
    rows = AuditEntry.objects.filter(tenant_id=tenant_id).count()
    if AuditPending.objects.count() != rows or rows < ENTRIES + WRITES:
        raise AssertionError(f"{AuditPending.objects.count():,} entries wait for the sealer, of {rows:,}")
    common.progress(f"sealing {rows:,} pending entries")
    read_rows, read_s = _copy_rate(READ_SQL.format(tenant=int(tenant_id)))
    started = time.perf_counter()
    sealed = 0
    while True:
        done = chain.seal()
        sealed += done
        if not done:
            break
    seal_s = time.perf_counter() - started
    if sealed != rows:
        raise AssertionError(f"sealed {sealed:,} entries, not {rows:,}")

    common.progress("exporting the whole trail as JSON Lines in a process of its own")
    floor_rows, floor_s = _copy_rate(EXPORT_SQL.format(tenant=int(tenant_id)))
    child = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-c", EXPORT_CHILD, str(tenant_id)],
        # The bench's size too: the child's database is this run's (common.db_name).
        cwd=common.ROOT, env={**common.server_env(), "L10_BENCH_SIZE": "small" if common.SMALL else ""},
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    if child.returncode != 0:
        raise AssertionError(f"the export failed: {child.stderr[-3000:]}")
    exported = json.loads(child.stdout.strip().splitlines()[-1])
    if exported["rows"] != rows or floor_rows != rows:
        raise AssertionError(f"exported {exported['rows']:,} rows (COPY {floor_rows:,}), not {rows:,}")

    common.progress("verifying the whole chain")
    started = time.perf_counter()
    verdict = chain.verify(tenant_id)
    verify_s = time.perf_counter() - started
    if not verdict.ok or verdict.links != rows:
        raise AssertionError(f"the chain does not verify: {verdict}")
    bench_fanout.drop_django_connections()

    p50, p99 = statistics.median(writes) * 1000, common.percentile(writes, 99) * 1000
    floor_p99 = common.percentile(write_floors, 99) * 1000
    rss_mb = exported["max_rss_kb"] / 1024
    own_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return [
        Row(
            "audit entry written in a control transaction, p99",
            "ms",
            p99,
            target=WRITE_MS,
            floor=floor_p99,
            note=f"p50 {p50:.3f} ms over {WRITES:,} writes, each in a begun transaction of its own, into a trail of "
            f"{ENTRIES:,} (the INSERT and the trigger's pending row); floor: SELECT 1 in the same transaction, p99",
        ),
        Row(
            "audit export of the whole trail (JSON Lines)",
            "rows/s",
            exported["rows"] / exported["seconds"],
            better="higher",
            target=EXPORT_ROWS_PER_S,
            floor=floor_rows / floor_s,
            note=f"{exported['rows']:,} rows in {exported['seconds']:.1f} s, in a process of its own on core 0; "
            f"floor: COPY of the same rows with their chain fields ({floor_s:.1f} s); {pinning}",
        ),
        Row(
            "audit export: the exporting process's peak memory",
            "MB",
            rss_mb,
            target=EXPORT_MB,
            note=f"ru_maxrss of the process (Python, Django and the console loaded: this bench's own is {own_rss:.0f} MB)",
        ),
        Row(
            "audit sealer: a backlog chained",
            "rows/s",
            rows / seal_s,
            better="higher",
            floor=read_rows / read_s,
            note=f"{rows:,} entries in {seal_s:.1f} s, 2,000 per transaction (keyed HMAC-SHA256 each); floor: COPY of "
            f"the entries ({read_s:.1f} s)",
        ),
        Row(
            "audit chain verified",
            "rows/s",
            rows / verify_s,
            better="higher",
            note=f"{rows:,} links in {verify_s:.1f} s: what `manage.py verify_audit` costs",
        ),
    ]
