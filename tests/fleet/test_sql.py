"""The fleet's plain statements against their portable twins, on the same PostgreSQL data:
the same rows written, the same answers read."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.errors import ErrorCode, InterfaceError
from fleet import sql
from fleet.models import Agent, DesiredState, MetricMinute, MetricSampleId, ObservedState
from ingest.control import AgentControl
from ingest.schemas import Metrics
from tests.factories import AgentFactory
from tests.parity import parity

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

PATHS = ("plain", "portable")
T0 = datetime(2026, 11, 25, 12, 0, 10, tzinfo=UTC)
AGENT_COLUMNS = (
    "observed_state",
    "observed_changed_at",
    "last_heartbeat_at",
    "cpu_percent",
    "memory_mb",
    "latency_p95_ms",
    "tokens_per_min",
    "requests_per_min",
    "errors_per_min",
    "metrics_at",
    "delivered_version",
    "delivered_at",
)
MINUTE_COLUMNS = (
    "minute",
    "samples",
    "cpu_sum",
    "cpu_max",
    "memory_sum",
    "memory_max",
    "tokens",
    "requests",
    "errors",
    "latency_p95_ms",
)


def reading(**values: Any) -> Metrics:
    return Metrics.model_validate(values)


def minutes_of(agent: Agent) -> list[tuple[Any, ...]]:
    return list(MetricMinute.objects.filter(agent=agent).order_by("minute").values_list(*MINUTE_COLUMNS))


@parity(sql.heartbeat)
def test_both_heartbeat_paths_leave_the_same_rows_and_answer_the_same(tenant_a):
    quotas = {"tokens": {"day": 5000}}
    agents = {
        path: AgentFactory.create(
            tenant=tenant_a,
            external_id=f"agent-{path}",
            desired_state=DesiredState.PAUSED,
            version=3,
            quotas=quotas,
            observed_state=ObservedState.STARTING,
        )
        for path in PATHS
    }
    first = reading(cpu_percent=40.0, memory_mb=500.0, tokens=600, requests=6, errors=1, latency_p95_ms=90.0)
    second = reading(cpu_percent=70.0, memory_mb=450.0, tokens=300, requests=3, errors=0)
    answers = {}
    for path, agent in agents.items():
        run = getattr(sql.heartbeat, path)
        # No metrics; a state change with metrics; the same minute again (merged); the next minute.
        answers[path] = [
            run(tenant_a, agent.external_id, "starting", None, None, T0),
            run(tenant_a, agent.external_id, "running", first, None, T0 + timedelta(seconds=10)),
            run(tenant_a, agent.external_id, "running", second, T0 + timedelta(seconds=15), T0 + timedelta(seconds=20)),
            run(tenant_a, agent.external_id, "running", first, None, T0 + timedelta(seconds=60)),
        ]

    for path, results in answers.items():
        assert [previous for _, previous in results] == ["starting", "starting", "running", "running"], path
        answered = results[-1][0]
        shown = (answered.pk, answered.external_id, answered.desired_state, answered.version, answered.quotas)
        assert shown == (agents[path].pk, f"agent-{path}", "paused", 3, quotas), path
        assert (answered.observed_state, answered.pause_mode, answered.pause_until) == ("running", "after_task", None)
        assert AgentControl.of(answered).usage == {"tokens": {"day": 0}}

    rows = {path: Agent.objects.filter(pk=agent.pk).values(*AGENT_COLUMNS).get() for path, agent in agents.items()}
    assert rows["plain"] == rows["portable"]
    assert rows["plain"]["observed_changed_at"] == T0 + timedelta(seconds=10)  # kept while unchanged
    assert rows["plain"]["last_heartbeat_at"] == T0 + timedelta(seconds=60)
    assert rows["plain"]["tokens_per_min"] == 600 / (10 / 60)
    assert (rows["plain"]["delivered_version"], rows["plain"]["delivered_at"]) == (3, T0)

    assert minutes_of(agents["plain"]) == minutes_of(agents["portable"])
    assert minutes_of(agents["plain"]) == [
        (T0.replace(second=0), 2, 110.0, 70.0, 950.0, 500.0, 900, 9, 1, 90.0),
        (T0.replace(second=0) + timedelta(minutes=1), 1, 40.0, 40.0, 500.0, 500.0, 600, 6, 1, 90.0),
    ]


@parity(sql.heartbeats)
def test_a_batch_of_heartbeats_leaves_the_rows_one_at_a_time_leaves(tenant_a, tenant_b):
    """Both batch paths and the single heartbeat statement, beat by beat: the same agent
    rows, the same minute rows, the same answers; an agent the tenant lacks is None."""
    until = T0 + timedelta(hours=2)
    first = reading(cpu_percent=40.0, memory_mb=500.0, tokens=600, requests=6, errors=1, latency_p95_ms=90.0)
    second = reading(tokens=30)  # gauges not reported
    sets = {}
    for path in (*PATHS, "single"):
        sets[path] = [
            AgentFactory.create(tenant=tenant_a, external_id=f"{path}-paused", desired_state=DesiredState.PAUSED,
                                pause_mode="now", pause_until=until, version=5, quotas={"tokens": {"day": 10}}),
            AgentFactory.create(tenant=tenant_a, external_id=f"{path}-quiet", observed_state=ObservedState.RUNNING),
            AgentFactory.create(tenant=tenant_a, external_id=f"{path}-new", observed_state=ObservedState.STARTING),
        ]  # fmt: skip
        AgentFactory.create(tenant=tenant_b, external_id=f"{path}-elsewhere")
    heard: dict[str, list[sql.Heard | None]] = {}
    for path, (paused, quiet, new) in sets.items():
        rounds = [
            ([sql.Beat(tenant_a, paused.external_id, "paused", first, None),
              sql.Beat(tenant_a, quiet.external_id, "error", None, None),
              sql.Beat(tenant_a, f"{path}-elsewhere", "running", first, None),
              sql.Beat(tenant_a, new.external_id, "running", second, T0 - timedelta(seconds=5))], T0),
            ([sql.Beat(tenant_a, paused.external_id, "paused", second, None),
              sql.Beat(tenant_a, new.external_id, "running", first, None)], T0 + timedelta(seconds=20)),
        ]  # fmt: skip
        heard[path] = []
        for beats, now in rounds:
            if path == "single":
                for beat in beats:
                    try:
                        agent, previous = sql.heartbeat.plain(beat.tenant, beat.external_id, beat.state, beat.reading,
                                                              beat.at, now)  # fmt: skip
                    except InterfaceError:
                        heard[path].append(None)
                        continue
                    heard[path].append(sql.Heard(agent.pk, agent.desired_state, agent.version, agent.quotas,
                                                 agent.pause_mode, agent.pause_until, previous))  # fmt: skip
            else:
                heard[path] += getattr(sql.heartbeats, path)(beats, now)

    def shown(found: list[sql.Heard | None]) -> list[Any]:
        return [None if h is None else (h.desired_state, h.version, h.quotas, h.pause_mode, h.pause_until,
                                        h.previous_state) for h in found]  # fmt: skip

    assert shown(heard["plain"]) == shown(heard["portable"]) == shown(heard["single"])
    assert shown(heard["plain"])[:4] == [
        ("paused", 5, {"tokens": {"day": 10}}, "now", until, "starting"),
        ("running", 1, {}, "after_task", None, "running"),
        None,
        ("running", 1, {}, "after_task", None, "starting"),
    ]
    assert [h.id for h in heard["plain"] if h] == [a.pk for a in (sets["plain"][0], sets["plain"][1],
                                                                   sets["plain"][2], sets["plain"][0],
                                                                   sets["plain"][2])]  # fmt: skip
    for index in range(3):
        rows = {path: Agent.objects.filter(pk=agents[index].pk).values(*AGENT_COLUMNS).get()
                for path, agents in sets.items()}  # fmt: skip
        assert rows["plain"] == rows["portable"] == rows["single"], index
        minutes = {path: minutes_of(agents[index]) for path, agents in sets.items()}
        assert minutes["plain"] == minutes["portable"] == minutes["single"], index
    assert minutes_of(sets["plain"][1]) == []  # no metrics, no minute row
    assert Agent.objects.filter(tenant=tenant_b, last_heartbeat_at__isnull=False).count() == 0


@pytest.mark.parametrize("path", PATHS)
def test_an_unknown_agent_is_refused_by_both_heartbeat_paths(path, tenant_a, agent_b):
    with pytest.raises(InterfaceError) as caught:
        getattr(sql.heartbeat, path)(tenant_a, agent_b.external_id, "running", None, None, T0)  # tenant B's agent
    assert caught.value.code == ErrorCode.INGEST_UNKNOWN_AGENT
    assert Agent.objects.get(pk=agent_b.pk).last_heartbeat_at is None


@parity(sql.upsert_minutes)
def test_both_minute_merges_add_sums_and_keep_maxima(tenant_a):
    agents = {path: AgentFactory.create(tenant=tenant_a, external_id=f"m-{path}") for path in PATHS}
    for path, agent in agents.items():
        upsert = getattr(sql.upsert_minutes, path)
        upsert([sql.minute_row(agent.pk, tenant_a.pk, T0, reading(cpu_percent=10.0, tokens=5, latency_p95_ms=30.0))])
        upsert(
            [
                sql.minute_row(agent.pk, tenant_a.pk, T0, reading(cpu_percent=30.0, memory_mb=8.0, tokens=7)),
                sql.minute_row(agent.pk, tenant_a.pk, T0 + timedelta(minutes=1), reading(requests=2, errors=1)),
            ]
        )
    assert minutes_of(agents["plain"]) == minutes_of(agents["portable"])
    assert minutes_of(agents["plain"]) == [
        (T0.replace(second=0), 2, 40.0, 30.0, 8.0, 8.0, 12, 0, 0, 30.0),
        (T0.replace(second=0) + timedelta(minutes=1), 1, 0.0, 0.0, 0.0, 0.0, 0, 2, 1, 0.0),
    ]


@parity(sql.claim_samples)
def test_both_sample_claims_claim_each_id_once_per_tenant(tenant_a, tenant_b):
    ids = [uuid.UUID(int=n) for n in range(1, 6)]
    claimed: dict[str, list[set[uuid.UUID]]] = {}
    for path, tenant in zip(PATHS, (tenant_a, tenant_b), strict=True):
        claim = getattr(sql.claim_samples, path)
        claimed[path] = [
            claim(tenant.pk, ids[:3], T0),
            claim(tenant.pk, [ids[2], ids[3], ids[3]], T0),  # one seen, one new twice
            claim(tenant.pk, [], T0),
        ]
    assert claimed["plain"] == claimed["portable"] == [set(ids[:3]), {ids[3]}, set()]
    for tenant in (tenant_a, tenant_b):
        stored = MetricSampleId.objects.filter(tenant=tenant).order_by("sample_id")
        assert list(stored.values_list("sample_id", "seen_at")) == [(i, T0) for i in ids[:4]]


@parity(sql.update_agent)
def test_both_agent_updates_write_the_same_columns(tenant_a, admin_a):
    agents = {path: AgentFactory.create(tenant=tenant_a, external_id=f"u-{path}") for path in PATHS}
    fields = ("desired_state", "desired_changed_by_id", "pause_reason", "pause_until", "quotas", "version")
    for path, agent in agents.items():
        agent.desired_state, agent.desired_changed_by = DesiredState.PAUSED, admin_a
        agent.pause_reason, agent.pause_until = "maintenance", T0
        agent.quotas, agent.version = {"tokens": {"hour": 7}}, 9
        agent.name = "not written"
        getattr(sql.update_agent, path)(agent, fields)
    rows = {path: Agent.objects.filter(pk=agent.pk).values(*fields, "name").get() for path, agent in agents.items()}
    assert rows["plain"] == {**rows["portable"], "name": "U Plain"}
    assert rows["portable"] == {
        "desired_state": "paused",
        "desired_changed_by_id": admin_a.pk,
        "pause_reason": "maintenance",
        "pause_until": T0,
        "quotas": {"tokens": {"hour": 7}},
        "version": 9,
        "name": "U Portable",
    }


@dataclass(frozen=True)
class Report:
    cpu: float | None
    memory: float | None
    tokens: float
    requests: float
    errors: float
    at: datetime | None


# Seven agents' latest reports: an even count for the p95 to pick its rank, NULL gauges,
# and one whose report is too old to count.
REPORTS = [
    Report(12.5, 300.0, 60.0, 6.0, 0.0, T0),
    Report(80.0, 900.0, 600.0, 60.0, 6.0, T0),
    Report(55.0, None, 0.0, 0.0, 0.0, T0),
    Report(None, 450.0, 30.0, 3.0, 1.0, T0),
    Report(97.5, 1200.0, 6.0, 1.0, 0.0, T0 - timedelta(seconds=5)),
    Report(33.3, 250.0, 12.0, 2.0, 5.0, T0),  # more errors than requests: 2 failed
    Report(99.0, 4000.0, 0.0, 0.0, 0.0, T0 - timedelta(hours=1)),
]


@parity(sql.fleet_resources)
def test_both_fleet_resource_reads_agree(tenant_a):
    for i, r in enumerate(REPORTS):
        AgentFactory.create(
            tenant=tenant_a, cpu_percent=r.cpu, memory_mb=r.memory, tokens_per_min=r.tokens,
            requests_per_min=r.requests, errors_per_min=r.errors, metrics_at=r.at, external_id=f"r-{i}",
        )  # fmt: skip
    since = T0 - timedelta(seconds=30)
    plain, portable = sql.fleet_resources.plain(tenant_a.pk, since), sql.fleet_resources.portable(tenant_a.pk, since)
    assert plain._replace(cpu_mean=None) == portable._replace(cpu_mean=None)
    assert plain.cpu_mean == pytest.approx(portable.cpu_mean)
    # Six reporting; CPU of five (one NULL): nearest rank ceil(0.95 × 5) = 5th of 5.
    assert (plain.reporting, plain.cpu_p95, plain.memory_p95) == (6, 97.5, 1200.0)
    # Failed requests: each agent's errors capped at its requests, 6 + 1 + 2.
    assert plain.failed_per_min == 9.0
    empty = sql.fleet_resources.plain(tenant_a.pk, T0 + timedelta(days=1))
    assert empty == sql.fleet_resources.portable(tenant_a.pk, T0 + timedelta(days=1))
    assert empty == sql.ResourceFigures(0, None, None, None, None, 0.0, 0.0, 0.0)


# Observed and desired states of the same seven agents: two with a change under way (told
# to pause, still running; told to run, stopped), one in error and one starting, neither
# of which is carrying out a change (fleet/states.py).
STATES = [
    (ObservedState.RUNNING, DesiredState.RUNNING),
    (ObservedState.RUNNING, DesiredState.PAUSED),
    (ObservedState.PAUSED, DesiredState.PAUSED),
    (ObservedState.ERROR, DesiredState.RUNNING),
    (ObservedState.STOPPED, DesiredState.RUNNING),
    (ObservedState.RUNNING, DesiredState.RUNNING),
    (ObservedState.STARTING, DesiredState.RUNNING),
]


@parity(sql.fleet_tiles)
def test_both_tile_reads_agree_and_count_as_the_resource_read_does(tenant_a, tenant_b):
    for i, (r, (observed, desired)) in enumerate(zip(REPORTS, STATES, strict=True)):
        AgentFactory.create(
            tenant=tenant_a, cpu_percent=r.cpu, memory_mb=r.memory, tokens_per_min=r.tokens,
            requests_per_min=r.requests, errors_per_min=r.errors, metrics_at=r.at, external_id=f"r-{i}",
            observed_state=observed, desired_state=desired,
        )  # fmt: skip
    AgentFactory.create(tenant=tenant_b, cpu_percent=100.0, metrics_at=T0, observed_state=ObservedState.PAUSED)
    since = T0 - timedelta(seconds=30)
    plain, portable = sql.fleet_tiles.plain(tenant_a.pk, since), sql.fleet_tiles.portable(tenant_a.pk, since)
    assert plain[:3] == portable[:3]
    # Pending: the two above; not the one in error, nor the one starting (told to run).
    assert plain[:3] == (7, {"running": 3, "paused": 1, "error": 1, "stopped": 1, "starting": 1}, 2)
    # The resources are those of the separate read, on either path.
    alone = sql.fleet_resources.plain(tenant_a.pk, since)
    assert plain.resources._replace(cpu_mean=None) == alone._replace(cpu_mean=None)
    assert portable.resources._replace(cpu_mean=None) == alone._replace(cpu_mean=None)
    assert plain.resources.cpu_mean == pytest.approx(portable.resources.cpu_mean) == pytest.approx(alone.cpu_mean)
    later = T0 + timedelta(days=1)
    empty = sql.fleet_tiles.plain(tenant_a.pk, later)
    assert empty == sql.fleet_tiles.portable(tenant_a.pk, later)
    assert empty.resources == sql.ResourceFigures(0, None, None, None, None, 0.0, 0.0, 0.0)
    nobody = sql.fleet_tiles.plain(tenant_a.pk + tenant_b.pk + 1, since)
    assert nobody == sql.fleet_tiles.portable(tenant_a.pk + tenant_b.pk + 1, since) == (0, {}, 0, empty.resources)


@parity(sql.fleet_minutes)
def test_both_fleet_minute_reads_agree(tenant_a, tenant_b):
    start = T0.replace(second=0)
    for i in range(21):  # 21 agents in the first minute: the p95 is the 20th (ceil(19.95)), not an interpolation
        agent = AgentFactory.create(tenant=tenant_a, external_id=f"f-{i}")
        rows = [sql.minute_row(agent.pk, tenant_a.pk, start, reading(cpu_percent=float(i * 3), memory_mb=100.0 + i))]
        if i % 2:
            rows.append(sql.minute_row(agent.pk, tenant_a.pk, start + timedelta(minutes=1), reading(tokens=i)))
        sql.upsert_minutes.plain(rows)
    other = AgentFactory.create(tenant=tenant_b)
    sql.upsert_minutes.plain([sql.minute_row(other.pk, tenant_b.pk, start, reading(cpu_percent=100.0))])

    end = start + timedelta(minutes=2)
    plain, portable = (
        sql.fleet_minutes.plain(tenant_a.pk, start, end),
        sql.fleet_minutes.portable(tenant_a.pk, start, end),
    )
    assert [p.minute for p in plain] == [p.minute for p in portable] == [start, start + timedelta(minutes=1)]
    for p, q in zip(plain, portable, strict=True):
        assert p._replace(cpu_sum=0, memory_sum=0) == q._replace(cpu_sum=0, memory_sum=0)
        assert (p.cpu_sum, p.memory_sum) == pytest.approx((q.cpu_sum, q.memory_sum))
    assert (plain[0].agents, plain[0].cpu_p95, plain[0].memory_p95) == (21, 57.0, 119.0)
    assert (plain[1].agents, plain[1].tokens) == (10, sum(range(1, 21, 2)))


@parity(sql.tenants_minutes)
def test_both_reads_of_every_tenants_minutes_agree_with_each_tenants_own(tenant_a, tenant_b):
    start = T0.replace(second=0)
    for tenant, cpus in ((tenant_a, (10.0, 30.0, 50.0)), (tenant_b, (90.0,))):
        for i, cpu in enumerate(cpus):
            agent = AgentFactory.create(tenant=tenant, external_id=f"m-{i}")
            rows = [sql.minute_row(agent.pk, tenant.pk, start, reading(cpu_percent=cpu, memory_mb=10.0 * (i + 1)))]
            rows.append(sql.minute_row(agent.pk, tenant.pk, start + timedelta(minutes=1), reading(tokens=i + 1)))
            sql.upsert_minutes.plain(rows)
    end = start + timedelta(minutes=2)
    plain, portable = sql.tenants_minutes.plain(start, end), sql.tenants_minutes.portable(start, end)
    assert [(t, f.minute) for t, f in plain] == [(t, f.minute) for t, f in portable]
    for (_, p), (_, q) in zip(plain, portable, strict=True):
        assert p._replace(cpu_sum=0, memory_sum=0) == q._replace(cpu_sum=0, memory_sum=0)
        assert (p.cpu_sum, p.memory_sum) == pytest.approx((q.cpu_sum, q.memory_sum))
    # The same figures as each tenant's own read (what the charts show).
    for tenant in (tenant_a, tenant_b):
        assert [f for t, f in plain if t == tenant.pk] == sql.fleet_minutes.plain(tenant.pk, start, end)
    assert [(t, f.agents) for t, f in plain if f.minute == start] == [(tenant_a.pk, 3), (tenant_b.pk, 1)]


@parity(sql.agent_by_id)
def test_both_agent_reads_load_the_agent_its_tenant_and_who_changed_it(tenant_a, operator_a):
    from fleet import services

    changed = AgentFactory.create(tenant=tenant_a, labels={"team": "search"}, quotas={"tokens": {"day": 5}})
    untouched = AgentFactory.create(tenant=tenant_a)
    services.agent_desired_state_set(agent_id=changed.pk, state=DesiredState.PAUSED, actor=operator_a)
    for agent in (changed, untouched):
        fast, orm = sql.agent_by_id.plain(agent.pk), sql.agent_by_id.portable(agent.pk)
        assert fast is not None and orm is not None
        fields = [f.attname for f in type(orm)._meta.concrete_fields]
        assert [getattr(fast, f) for f in fields] == [getattr(orm, f) for f in fields]
        tenant_fields = [f.attname for f in type(orm.tenant)._meta.concrete_fields]
        assert [getattr(fast.tenant, f) for f in tenant_fields] == [getattr(orm.tenant, f) for f in tenant_fields]
        assert (fast.desired_changed_by and fast.desired_changed_by.get_username()) == (
            orm.desired_changed_by and orm.desired_changed_by.get_username()
        )
    paused = sql.agent_by_id.plain(changed.pk)
    assert paused is not None and paused.desired_changed_by is not None
    assert paused.desired_changed_by.get_username() == operator_a.get_username() and paused.labels == {"team": "search"}
    assert sql.agent_by_id.plain(uuid.uuid4()) is None and sql.agent_by_id.portable(uuid.uuid4()) is None
