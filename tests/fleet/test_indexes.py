"""The overview's top tens and the agent list's label filters on PostgreSQL: the label
selectors' containment form means what the key lookup means, and the queries are served by
the indexes made for them (fleet/models.py, migration 0008; docs/performance.md, "Tiles and
filters at 50,000 agents")."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from fleet.labels import parse_selector, with_selector
from fleet.models import Agent
from fleet.selectors import top_agents
from tests.factories import AgentFactory

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

# Labels as agents register them, and the shapes only a hand-edited row could hold: a value
# that is not a string, a list where a string goes, labels that are not an object at all.
LABELS = [
    {"team": "search", "env": "prod", "zone": "eu-1"},
    {"team": "search", "env": "staging"},
    {"team": "ads", "env": "prod", "app.kubernetes.io/name": "bidder"},
    {"team": "research"},
    {},
    {"team": "sé@rch", "env": "dev"},
    {"team": 'qu"ote', "team__regex": "x.*"},
    {"team": ["search"], "env": 5},
    ["team", "search"],
]
SELECTORS = [
    "team=search",
    "team!=search",
    "env!=prod",
    "team in (ads, research)",
    "team notin (ads,research)",
    "team=search,env=prod",
    "team in (search,ads),env notin (staging)",
    "zone!=eu-1,team=search",
    "app.kubernetes.io/name=bidder",
    "team=sé@rch",
    'team=qu"ote',
    "team__regex=x.*",
    "env=5",
    "team=nobody",
    "nokey!=x",
    "nokey notin (x,y)",
]


@pytest.fixture
def labelled(tenant_a, tenant_b):
    agents = [
        AgentFactory.create(tenant=tenant_a, labels=labels, external_id=f"l-{i}") for i, labels in enumerate(LABELS)
    ]
    AgentFactory.create(tenant=tenant_b, labels={"team": "search", "env": "prod"})
    return agents


@pytest.mark.parametrize("selector", SELECTORS)
def test_a_selector_means_the_same_as_containment_and_as_a_key_lookup(tenant_a, labelled, selector):
    requirements = parse_selector(selector)
    agents = Agent.objects.filter(tenant=tenant_a)
    contained = set(with_selector(agents, requirements, containment=True).values_list("external_id", flat=True))
    looked_up = set(with_selector(agents, requirements, containment=False).values_list("external_id", flat=True))
    assert contained == looked_up, selector
    assert set(with_selector(agents, requirements).values_list("external_id", flat=True)) == contained


def test_containment_matches_whole_string_values_only(tenant_a, labelled):
    def matched(selector: str) -> list[str]:
        found = with_selector(Agent.objects.filter(tenant=tenant_a), parse_selector(selector))
        return sorted(found.values_list("external_id", flat=True))

    assert matched("team=search") == ["l-0", "l-1"]  # not the list ["search"], not the other tenant's
    assert matched("env!=prod") == ["l-1", "l-3", "l-4", "l-5", "l-6", "l-7", "l-8"]
    assert matched("env=5") == []  # the number 5 is not the label value "5"


def plans(run) -> list[str]:
    """The plan of every query ``run`` makes, with the planner told to avoid whole-table
    scans and sorts wherever an index offers another way (the test's table is small)."""
    with CaptureQueriesContext(connection) as queries:
        run()
    found = []
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE fleet_agent")
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("SET enable_sort = off")
        try:
            for query in queries.captured_queries:
                cursor.execute(f"EXPLAIN {query['sql']}")
                found.append("\n".join(row[0] for row in cursor.fetchall()))
        finally:
            cursor.execute("RESET enable_seqscan")
            cursor.execute("RESET enable_sort")
    return found


def test_the_top_tens_walk_their_indexes(tenant_a, tenant_b):
    now = timezone.now()
    for i in range(60):
        AgentFactory.create(
            tenant=tenant_a if i % 4 else tenant_b, cpu_percent=float(i), tokens_per_min=float(i * 10),
            requests_per_min=10.0, errors_per_min=float(i % 7), metrics_at=now - timedelta(seconds=i),
        )  # fmt: skip
    cpu, error_rate, tokens = plans(lambda: top_agents(tenant_a.pk, now))
    assert "agent_top_cpu" in cpu and "Sort" not in cpu, cpu
    assert "agent_top_error_rate" in error_rate and "Sort" not in error_rate, error_rate
    assert "agent_top_tokens" in tokens and "Sort" not in tokens, tokens


def test_the_top_tens_walk_their_indexes_while_the_statistics_trail_the_clock(tenant_a):
    # Live agents report after the last ANALYZE: its statistics say that no agent reported
    # this recently, so with the bound in sight the planner would sort a scan of the tenant.
    now = timezone.now()
    Agent.objects.bulk_create(
        Agent(
            tenant=tenant_a,
            external_id=f"s-{i}",
            name=f"S {i}",
            cpu_percent=float(i % 100),
            tokens_per_min=float(i),
            requests_per_min=10.0,
            errors_per_min=float(i % 7),
            metrics_at=now - timedelta(hours=1),
        )
        for i in range(4000)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE fleet_agent")
    Agent.objects.filter(tenant=tenant_a, tokens_per_min__gte=1000).update(metrics_at=now)
    with CaptureQueriesContext(connection) as queries:
        top = top_agents(tenant_a.pk, now)
    assert [len(rows) for rows in top.values()] == [10, 10, 10]
    with connection.cursor() as cursor:
        for query, index in zip(queries.captured_queries, ("cpu", "error_rate", "tokens"), strict=True):
            cursor.execute(f"EXPLAIN {query['sql']}")
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert f"Index Scan using agent_top_{index}" in plan and "Sort" not in plan, plan


@pytest.mark.parametrize("selector", ["team=search", "team in (search,ads),env=prod", "team=search,env!=dev"])
def test_a_label_filter_can_be_served_by_the_labels_gin_index(tenant_a, selector):
    # Whether the planner prefers it depends on the fleet's size (docs/performance.md, "Tiles
    # and filters at 50,000 agents"); here: that the filter is one the index can serve. The
    # key lookup (the form SQLite keeps) is not.
    teams = ("search", "ads", "research", "infra", "billing", "growth", "support", "data")
    Agent.objects.bulk_create(
        Agent(tenant=tenant_a, external_id=f"g-{i}", name=f"G {i}", labels={"team": teams[i % 8], "env": "prod"})
        for i in range(400)
    )
    requirements = parse_selector(selector)
    (contained,) = plans(lambda: with_selector(Agent.objects.all(), requirements).count())
    (looked_up,) = plans(lambda: with_selector(Agent.objects.all(), requirements, containment=False).count())
    assert "Bitmap Index Scan on agent_labels_gin" in contained, contained
    assert "agent_labels_gin" not in looked_up, looked_up
