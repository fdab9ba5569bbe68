from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from fleet import services
from fleet.models import Agent, DesiredState, ObservedState
from tests.conftest import client_for
from tests.dashboard.conftest import live_agent
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db


def chart_json(page: str, chart_id: str) -> dict:
    match = re.search(rf'<script id="{chart_id}" type="application/json">(.*?)</script>', page, re.S)
    assert match, f"no {chart_id} in the page"
    return json.loads(match.group(1))


def test_the_overview_counts_agents_and_shows_fleet_resources_and_tops(viewer_a, acme_fleet, globex_fleet):
    page = client_for(viewer_a).get("/t/acme/").content.decode()
    assert re.search(r'data-testid="total-agents">4<', page)
    assert re.search(r'data-testid="count-running">4<', page)
    assert re.search(r'data-testid="count-paused">0<', page)
    assert re.search(r'data-testid="count-pending">1<', page)  # planner-1: told to pause, still running
    assert "46.2" in page  # mean CPU of 10, 30, 95, 50
    top_cpu = page[page.index("Top CPU") : page.index("Top error rate")]
    assert top_cpu.index("Bidder 1") < top_cpu.index("Planner 1") < top_cpu.index("Crawler 1")
    assert "Globex" not in page
    cpu = chart_json(page, "chart-cpu")
    assert cpu["unit"] == "%" and len(cpu["x"]) == 60
    assert [s["label"] for s in cpu["series"]] == ["mean", "p95"]
    assert any(v is not None for v in cpu["series"][0]["values"])


@pytest.mark.parametrize("rng", ["15m", "1h", "6h", "24h", "7d"])
def test_every_range_renders_its_charts(viewer_a, acme_fleet, rng):
    response = client_for(viewer_a).get(
        f"/t/acme/?range={rng}", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="overview-charts"
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert page.startswith('<section id="overview-charts"')
    assert len(chart_json(page, "chart-cpu")["x"]) == {"15m": 15, "1h": 60, "6h": 72, "24h": 288, "7d": 336}[rng]


def test_the_polled_tiles_are_the_same_cached_part_for_every_member(viewer_a, admin_a, acme_fleet):
    full = client_for(viewer_a).get("/t/acme/").content.decode()
    tiles = client_for(admin_a).get("/t/acme/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="overview-tiles")
    part = tiles.content.decode()
    assert part.startswith('<div id="overview-tiles"') and "<html" not in part
    assert part in full  # one rendering, shared: nothing in it belongs to the viewer
    assert re.search(r'Figures read <time datetime="[^"]+" data-ago [^>]*>at \d\d:\d\d:\d\d UTC</time>', part)


def test_the_agent_list_reads_its_rows_in_a_bounded_number_of_queries(
    viewer_a, admin_a, acme_fleet, django_assert_max_num_queries
):
    # Two pending changes by a user: their names come with the rows, not one query each.
    services.agent_desired_state_set(agent_id=acme_fleet[0].pk, state=DesiredState.PAUSED, actor=admin_a)
    services.agent_desired_state_set(agent_id=acme_fleet[1].pk, state=DesiredState.PAUSED, actor=admin_a)
    client = client_for(viewer_a)
    client.get("/t/acme/")  # the first visit remembers the tenant in the session (a write)
    with django_assert_max_num_queries(5):  # session, user, memberships, count, page
        page = client.get("/t/acme/agents/").content.decode()
    assert page.count("requested") >= 2 and "by alice" in page


def test_the_agent_list_filters_by_state_label_and_name(viewer_a, acme_fleet, globex_fleet):
    client = client_for(viewer_a)

    def names(query: str) -> list[str]:
        page = client.get(f"/t/acme/agents/{query}").content.decode()
        return re.findall(r'<td class="name"><a href="/t/acme/agents/[0-9a-f-]+/">([^<]+)</a></td>', page)

    assert names("") == ["Bidder 1", "Crawler 1", "Crawler 2", "Planner 1"]
    assert names("?labels=team%3Dsearch") == ["Crawler 1", "Crawler 2"]
    assert names("?labels=team%3Dsearch,env%3Dprod") == ["Crawler 1"]
    assert names("?q=crawl") == ["Crawler 1", "Crawler 2"]
    assert names("?pending=1") == ["Planner 1"]
    assert names("?state=paused") == []
    assert names("?sort=-cpu") == ["Bidder 1", "Planner 1", "Crawler 2", "Crawler 1"]
    by_errors = names("?sort=errors")
    assert by_errors[-1] == "Crawler 2"  # the only one with errors; ties follow no promised order
    assert names("?sort=-errors")[0] == "Crawler 2"


def test_a_bad_label_filter_says_what_is_wrong(viewer_a, acme_fleet):
    response = client_for(viewer_a).get("/t/acme/agents/?labels=team")
    page = response.content.decode()
    assert response.status_code == 400
    assert "needs an operator" in page and "E10103" in page
    assert "0 agents" in page  # no guess at what was meant; the form is still there
    assert 'name="labels"' in page


@pytest.mark.parametrize(
    ("labels", "status"),
    [
        ("team__regex=(", 400),
        ("team__range=", 400),
        ("team__isnull=maybe", 200),  # a key of that name, which no agent has
        ("team__gt=a", 200),
        ("team__contains=s", 200),
        ("labels__team=search", 200),
        ("team=", 400),
        ("=search", 400),
        ("team in (search", 400),
        ("team in search", 400),
        ("team=search,,env", 400),
        ("team=a b", 400),
        ("team=(search)", 400),
    ],
)
def test_a_label_filter_reaches_no_lookup(viewer_a, acme_fleet, labels, status):
    # Keys were once passed on as ORM lookups: these answered 500 or matched other agents.
    response = client_for(viewer_a).get("/t/acme/agents/", {"labels": labels})
    page = response.content.decode()
    assert response.status_code == status, labels
    assert ("E10103" in page) == (status == 400)
    assert "0 agents" in page


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ("team=search", ["Crawler 1", "Crawler 2"]),
        ("team==search", ["Crawler 1", "Crawler 2"]),
        ("team!=search", ["Bidder 1", "Planner 1"]),
        ("env!=prod", ["Crawler 2", "Planner 1"]),  # lacking the key counts as "not prod"
        ("team in (ads, research)", ["Bidder 1", "Planner 1"]),
        ("team notin (ads,research)", ["Crawler 1", "Crawler 2"]),
        (" team = search , env = prod ", ["Crawler 1"]),
        ("team=nobody", []),
    ],
)
def test_a_label_selector_matches_as_written(viewer_a, acme_fleet, labels, expected):
    response = client_for(viewer_a).get("/t/acme/agents/", {"labels": labels})
    assert response.status_code == 200
    found = re.findall(
        r'<td class="name"><a href="/t/acme/agents/[0-9a-f-]+/">([^<]+)</a></td>', response.content.decode()
    )
    assert sorted(found) == expected


def test_the_agent_list_paginates_without_loading_every_agent(viewer_a, tenant_a, django_assert_max_num_queries):
    AgentFactory.create_batch(120, tenant=tenant_a)
    client = client_for(viewer_a)
    with django_assert_max_num_queries(12):
        first = client.get("/t/acme/agents/").content.decode()
    assert "Page 1 of 3" in first
    third = client.get("/t/acme/agents/?page=3").content.decode()
    assert len(re.findall(r'<tr id="agent-', third)) == 20


def test_the_agent_detail_says_who_asked_for_a_change_still_pending(operator_a, acme_fleet, token_a):
    planner = acme_fleet[3]
    services.agent_desired_state_set(agent_id=planner.pk, state=DesiredState.PAUSED, actor=operator_a)
    Agent.objects.filter(pk=planner.pk).update(desired_state=DesiredState.RUNNING)
    services.agent_desired_state_set(agent_id=planner.pk, state=DesiredState.PAUSED, actor=operator_a)
    services.agent_quotas_set(agent_id=planner.pk, quotas={"tokens": {"day": 1000}})
    page = client_for(operator_a).get(f"/t/acme/agents/{planner.pk}/").content.decode()
    assert re.search(r"pausing… requested <time[^>]*>\d+ s ago</time> by oscar", page)
    assert "tokens per day" in page and 'aria-valuemax="1000"' in page
    assert chart_json(page, "chart-cpu")["series"][1]["label"] == "peak"


def test_the_agent_detail_parts_come_alone_for_htmx(operator_a, acme_fleet):
    planner = acme_fleet[3]  # told to pause, still running
    client = client_for(operator_a)
    page = client.get(f"/t/acme/agents/{planner.pk}/?range=6h").content.decode()
    summary = client.get(
        f"/t/acme/agents/{planner.pk}/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="agent-summary"
    ).content.decode()
    assert summary.startswith('<section id="agent-summary"') and "<html" not in summary
    assert 'data-testid="desired-state">Paused<' in summary and "pausing…" in summary
    assert f'hx-get="/t/acme/agents/{planner.pk}/"' in summary
    charts = client.get(
        f"/t/acme/agents/{planner.pk}/?range=6h", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="agent-charts"
    ).content.decode()
    assert charts.startswith('<section id="agent-charts"') and "over the last 6 hours" in charts
    assert charts in page  # the cached panel, the same in the page and alone


def test_an_agent_of_another_of_my_tenants_is_not_shown_under_this_tenant(admin_a, tenant_b, globex_fleet):
    from tenancy.models import Membership, Role

    Membership.objects.create(user=admin_a, tenant=tenant_b, role=Role.VIEWER)
    client = client_for(admin_a)
    assert client.get(f"/t/globex/agents/{globex_fleet[0].pk}/").status_code == 200
    assert client.get(f"/t/acme/agents/{globex_fleet[0].pk}/").status_code == 404


def test_an_empty_tenant_says_what_to_do_next(admin_a):
    page = client_for(admin_a).get("/t/acme/agents/").content.decode()
    assert "No agents yet" in page and "Create a token" in page
    overview = client_for(admin_a).get("/t/acme/").content.decode()
    assert "No agent is reporting this right now." in overview


def test_live_agent_helper_makes_a_reporting_agent(tenant_a):
    agent = live_agent(tenant_a, "x-1", cpu=12.0)
    assert agent.metrics_at is not None and agent.cpu_percent == 12.0


def test_a_silent_or_idle_agent_shows_its_state_and_its_figures_as_last_reported(viewer_a, acme_fleet):
    crawler, _, bidder, planner = acme_fleet
    now = timezone.now()
    # Told to pause, then went silent: unresponsive, not "pausing…".
    Agent.objects.filter(pk=planner.pk).update(
        observed_state=ObservedState.UNRESPONSIVE, observed_changed_at=now - timedelta(minutes=5),
        metrics_at=now - timedelta(minutes=6),
    )  # fmt: skip
    Agent.objects.filter(pk=bidder.pk).update(observed_state=ObservedState.STOPPED, desired_state=DesiredState.STOPPED)
    client = client_for(viewer_a)
    page = client.get("/t/acme/agents/").content.decode()
    rows = re.findall(r'<tr id="agent-[^"]+".*?</tr>', page, re.S)
    row = {name: next(r for r in rows if f">{name}</a>" in r) for name in ("Planner 1", "Bidder 1", "Crawler 1")}
    assert re.search(r"Unresponsive</span> <small[^>]*>since <time[^>]*>5 min ago</time>", row["Planner 1"])
    assert "pausing…" not in row["Planner 1"] and "resuming…" not in page
    # The silent and the stopped agents' figures are greyed, with when they were reported.
    for name in ("Planner 1", "Bidder 1"):
        assert (
            len(
                re.findall(
                    r'<td class="n stale" data-label="[^"]+" title="Last reported \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC">',
                    row[name],
                )
            )
            == 4
        )
    assert "stale" not in row["Crawler 1"]
    detail = client.get(f"/t/acme/agents/{planner.pk}/").content.decode()
    assert re.search(
        r'data-testid="metrics-stale">Last reported <time[^>]*>6 min ago</time>: the agent is not reporting', detail
    )
    assert 'data-testid="unresponsive-since"' in detail
    stopped = client.get(f"/t/acme/agents/{bidder.pk}/").content.decode()
    assert "the agent is stopped. These are not current figures." in stopped
    assert 'data-testid="metrics-stale"' not in client.get(f"/t/acme/agents/{crawler.pk}/").content.decode()


def test_the_top_error_rate_is_bounded_and_leaves_out_agents_without_requests(viewer_a, acme_fleet):
    now = timezone.now()
    # More errors than requests (retries counted as errors): 100 %, not 175 %.
    Agent.objects.filter(pk=acme_fleet[0].pk).update(errors_per_min=17.5, requests_per_min=10.0, metrics_at=now)
    # Errors without requests: no rate, so not ranked.
    Agent.objects.filter(pk=acme_fleet[2].pk).update(errors_per_min=5.0, requests_per_min=0.0, metrics_at=now)
    page = client_for(viewer_a).get("/t/acme/").content.decode()
    top = page[page.index("Top error rate") : page.index("Top tokens")]
    rows = re.findall(r'<a href="[^"]+">([^<]+)</a></td><td class="n">([^<]+)</td>', top)
    assert rows == [("Crawler 1", "100.0 %"), ("Crawler 2", "20.0 %")]
    # The fleet's rate: each agent's errors capped at its requests, (10 + 2 + 0 + 0) / 30.
    assert re.search(r'Error rate</span><span class="tile-value">40.0 %<', page)


def test_viewers_get_no_selection_controls_and_operators_do(viewer_a, operator_a, acme_fleet):
    seen = client_for(viewer_a).get("/t/acme/agents/").content.decode()
    assert 'class="grid stack no-select"' in seen and "selected on this page" not in seen
    operated = client_for(operator_a).get("/t/acme/agents/").content.decode()
    assert 'class="grid stack"' in operated and "Pause selected…" in operated
    css = (settings.BASE_DIR / "static" / "css" / "console.css").read_text()
    assert ".grid.no-select .select { display: none; }" in css  # what hides the rows' shared checkboxes


def test_a_refused_control_dialog_opens_again_once_with_what_was_typed(admin_a, acme_fleet):
    agent = acme_fleet[0]
    client = client_for(admin_a)
    form = {
        "quota_type": "tokens",
        "period": "hour",
        "new_limit": "-5",
        "reason": "<b>why</b>",
        "idempotency_key": "k-1",
    }
    response = client.post(f"/t/acme/agents/{agent.pk}/control/quota/", form, follow=True)
    page = response.content.decode()
    dialog = page[
        page.index('<dialog class="confirm" id="dialog-quota"') : page.index(
            "</dialog>", page.index('id="dialog-quota"')
        )
    ]
    assert "data-open-on-load" in dialog and "(E10303)" in dialog
    assert 'value="-5" aria-invalid="true"' in dialog
    assert '<option value="hour" selected>' in dialog and '<option value="tokens" selected>' in dialog
    assert "&lt;b&gt;why&lt;/b&gt;</textarea>" in dialog  # kept, and escaped
    assert page.count("data-open-on-load") == 1  # only the refused dialog
    again = client.get(f"/t/acme/agents/{agent.pk}/").content.decode()
    assert "data-open-on-load" not in again  # shown once


def test_the_agent_page_shows_warnings_and_errors_first_and_all_events_on_request(viewer_a, acme_fleet):
    from events.models import Event

    agent = acme_fleet[0]
    now = timezone.now()
    for n, (kind, severity) in enumerate(
        [("task.completed", "info")] * 20
        + [("task.failed", "error"), ("quota.near", "warning"), ("debug.tick", "debug")]
    ):
        Event.objects.create(
            tenant=agent.tenant, agent=agent, type=kind, severity=severity, message=f"m{n}",
            occurred_at=now - timedelta(seconds=60 - n),
        )  # fmt: skip
    client = client_for(viewer_a)

    def types(query: str = "") -> list[str]:
        page = client.get(f"/t/acme/agents/{agent.pk}/{query}").content.decode()
        section = page[page.index('<section class="card" id="agent-events"') :]
        section = section[: section.index("</section>")]
        return re.findall(r"<td><code>([a-z.]+)</code></td>", section)

    # By default the errors are not buried under twenty completed tasks.
    assert types() == ["quota.near", "task.failed"]
    assert types("?events=bogus") == ["quota.near", "task.failed"]  # an unknown filter is the default
    assert types("?events=info") == ["quota.near", "task.failed"] + ["task.completed"] * 13
    assert types("?events=all")[:3] == ["debug.tick", "quota.near", "task.failed"]
    part = client.get(
        f"/t/acme/agents/{agent.pk}/?events=all", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="agent-events"
    ).content.decode()
    assert part.startswith('<section class="card" id="agent-events"') and "<html" not in part
    assert 'aria-current="true">All</a>' in part
    # The card reads itself again with the filter it shows (its live socket asks it to).
    assert 'hx-get="?events=all" hx-trigger="l10:refresh"' in part


def test_the_agent_pages_live_cards_are_read_fresh_while_the_page_itself_is_cached(viewer_a, acme_fleet):
    from events.models import Event

    agent = acme_fleet[0]
    client = client_for(viewer_a)
    assert "No control actions yet" in client.get(f"/t/acme/agents/{agent.pk}/").content.decode()  # now cached
    Event.objects.create(
        tenant=agent.tenant, agent=agent, type="control.pause", severity="warning", message="Paused by oscar",
        occurred_at=timezone.now(),
    )  # fmt: skip

    def card(target: str) -> str:
        response = client.get(f"/t/acme/agents/{agent.pk}/", HTTP_HX_REQUEST="true", HTTP_HX_TARGET=target)
        return response.content.decode()

    assert "No control actions yet" in client.get(f"/t/acme/agents/{agent.pk}/").content.decode()  # the cache
    controls = card("agent-controls")
    assert controls.startswith('<section class="card" id="agent-controls"') and "Paused by oscar" in controls
    assert "Paused by oscar" in card("agent-events")  # a warning: shown by default
