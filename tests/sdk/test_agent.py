"""The SDK against a live console: uvicorn serving the ASGI app over the test database."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
from l10_agent import Agent, AgentPaused, AgentStopped, Change, QuotaExceeded

from costs.models import UsageRecord
from events.models import Event
from fleet import services
from fleet.models import Agent as AgentRow
from fleet.models import DesiredState, MetricMinute, MetricSampleId, ObservedState
from tests.conftest import LiveServer, UvicornThread, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


@pytest.fixture
def make_agent(token_a: str) -> Iterator[Any]:
    made: list[Agent] = []

    def make(server_url: str, external_id: str = "sdk-1", **kwargs: Any) -> Agent:
        agent = Agent(server_url, token_a, external_id, labels={"team": "search"}, **kwargs)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.close(timeout=2)


def row(external_id: str = "sdk-1") -> AgentRow:
    return AgentRow.objects.get(external_id=external_id)


def registered(agent: Agent) -> None:
    assert agent.registered.wait(10), "the agent did not register"


def test_it_registers_and_heartbeats_its_state_and_metrics(asgi_server: LiveServer, make_agent, tenant_a):
    agent = make_agent(asgi_server.url, heartbeat_interval=0.2)
    agent.record_metrics(cpu_percent=37.5, memory_mb=640.0, tokens=120, requests=3)
    registered(agent)
    wait_for(lambda: row().observed_state == ObservedState.RUNNING and row().cpu_percent == 37.5, what="a heartbeat")
    stored = row()
    assert stored.tenant == tenant_a
    assert stored.labels == {"team": "search"}
    assert str(stored.pk) == agent.agent_id
    assert MetricMinute.objects.filter(agent=stored).exists()


def test_a_pause_arrives_over_the_socket_within_a_second_and_the_agent_confirms(asgi_server, make_agent):
    changes: list[Change] = []
    agent = make_agent(asgi_server.url, heartbeat_interval=60, on_change=changes.append)
    registered(agent)
    wait_for(lambda: agent.connected, what="the control socket")
    services.agent_desired_state_set(agent_id=row().pk, state=DesiredState.PAUSED, actor=None)
    wait_for(lambda: agent.state == "paused", timeout=1.0, what="the pause to arrive over the socket")
    assert changes[-1].desired_state == "paused" and changes[-1].previous_state == "running"
    # The agent confirms over the socket too; the heartbeat is a minute away.
    wait_for(lambda: row().observed_state == ObservedState.PAUSED, timeout=2, what="the confirmation")


def test_the_same_change_arrives_by_heartbeat_without_a_socket(asgi_server, make_agent):
    agent = make_agent(asgi_server.url, heartbeat_interval=0.3, socket=False)
    registered(agent)
    assert not agent.connected
    services.agent_desired_state_set(agent_id=row().pk, state=DesiredState.PAUSED, actor=None)
    wait_for(lambda: agent.state == "paused", timeout=3, what="the pause by heartbeat")
    wait_for(lambda: row().observed_state == ObservedState.PAUSED, timeout=3, what="the confirmation by heartbeat")
    assert not agent.connected


def test_task_waits_while_paused_and_runs_when_resumed(asgi_server, make_agent):
    agent = make_agent(asgi_server.url, heartbeat_interval=60)
    registered(agent)
    wait_for(lambda: agent.connected, what="the control socket")
    services.agent_desired_state_set(agent_id=row().pk, state=DesiredState.PAUSED, actor=None)
    wait_for(lambda: agent.state == "paused", what="the pause")
    with pytest.raises(TimeoutError), agent.task("crawl", timeout=0.2):
        pytest.fail("a task started while paused")
    ran = threading.Event()

    def work() -> None:
        with agent.task("crawl"):
            ran.set()

    worker = threading.Thread(target=work)
    worker.start()
    assert not ran.wait(0.3), "a task started while paused"
    services.agent_desired_state_set(agent_id=row().pk, state=DesiredState.RUNNING, actor=None)
    assert ran.wait(2), "the task did not start after resume"
    worker.join(2)
    agent.flush()
    completed = Event.objects.get(type="task.completed", agent__external_id="sdk-1")
    assert completed.data["task"] == "crawl" and completed.data["outcome"] == "succeeded"
    assert Event.objects.filter(type="task.started").count() == 1


def test_a_pause_waits_for_the_task_in_hand_before_confirming(asgi_server, make_agent):
    agent = make_agent(asgi_server.url, heartbeat_interval=60)
    registered(agent)
    wait_for(lambda: agent.connected, what="the control socket")
    with agent.task("long"):
        services.agent_desired_state_set(agent_id=row().pk, state=DesiredState.PAUSED, actor=None)
        wait_for(lambda: agent.state == "paused", what="the pause")
        assert agent.observed_state == "running"
    wait_for(lambda: agent.observed_state == "paused", what="the agent to settle")
    wait_for(lambda: row().observed_state == ObservedState.PAUSED, what="the confirmation")


@pytest.mark.parametrize("mode, stops", [("now", True), ("after_task", False)])
def test_a_checkpoint_ends_the_task_in_hand_only_for_a_pause_now(asgi_server, make_agent, mode, stops):
    agent = make_agent(asgi_server.url, heartbeat_interval=60)
    registered(agent)
    wait_for(lambda: agent.connected, what="the control socket")
    pause = services.Pause(reason="maintenance", mode=mode)
    with pytest.raises(AgentPaused) if stops else contextlib.nullcontext(), agent.task("long"):
        agent.checkpoint()  # running: nothing happens
        services.agent_desired_state_set(agent_id=row().pk, state=DesiredState.PAUSED, actor=None, pause=pause)
        wait_for(lambda: agent.state == "paused", what="the pause")
        agent.checkpoint()
    wait_for(lambda: row().observed_state == ObservedState.PAUSED, what="the confirmation")


def test_task_raises_after_a_stop(asgi_server, make_agent):
    agent = make_agent(asgi_server.url, heartbeat_interval=60)
    registered(agent)
    wait_for(lambda: agent.connected, what="the control socket")
    services.agent_desired_state_set(agent_id=row().pk, state=DesiredState.STOPPED, actor=None)
    wait_for(lambda: agent.state == "stopped", what="the stop")
    with pytest.raises(AgentStopped), agent.task("crawl"):
        pytest.fail("a task started after a stop")
    wait_for(lambda: row().observed_state == ObservedState.STOPPED, what="the confirmation")


def test_task_raises_past_a_hard_quota(asgi_server, make_agent):
    agent = make_agent(asgi_server.url, heartbeat_interval=0.3)
    registered(agent)
    services.agent_quotas_set(agent_id=row().pk, quotas={"tokens": {"day": 1000}})
    wait_for(lambda: agent.quotas == {"tokens": {"day": 1000}}, what="the quota")
    with agent.task("small"):
        agent.record_usage("gpt-4o", input_tokens=600, output_tokens=300)
    with agent.task("still under"):
        agent.record_usage("gpt-4o", input_tokens=100)
    with pytest.raises(QuotaExceeded) as info, agent.task("over"):
        pytest.fail("a task started past the quota")
    assert (info.value.kind, info.value.period, info.value.limit) == ("tokens", "day", 1000)
    # The console counts the same once the usage is flushed and a heartbeat answers.
    agent.flush()
    wait_for(lambda: agent.used("tokens", "day") == 1000, what="the console's count")
    assert sum(r.total_tokens for r in UsageRecord.objects.all()) == 1000
    # Raising the limit lets work start again.
    services.agent_quotas_set(agent_id=row().pk, quotas={"tokens": {"day": 5000}})
    wait_for(lambda: agent.quotas == {"tokens": {"day": 5000}}, what="the new quota")
    with agent.task("after raise"):
        pass


def test_records_survive_a_console_outage_up_to_the_bound(asgi_server_control: UvicornThread, make_agent, token_a):
    server = asgi_server_control
    server.start()
    url = f"http://127.0.0.1:{server.port}"
    kept = make_agent(url, "kept", heartbeat_interval=0.2, buffer_limit=50, flush_interval=0.1)
    spilled = make_agent(url, "spilled", heartbeat_interval=0.2, buffer_limit=50, flush_interval=0.1)
    registered(kept)
    registered(spilled)
    server.stop()

    for i in range(40):
        kept.record_usage("gpt-4o", input_tokens=i + 1)
    for i in range(60):
        spilled.record_usage("gpt-4o", input_tokens=i + 1)
    assert kept.dropped["usage"] == 0
    assert spilled.dropped["usage"] == 10  # the 10 oldest

    server.start()
    assert kept.flush(timeout=10) and spilled.flush(timeout=10)
    kept_rows = UsageRecord.objects.filter(agent__external_id="kept")
    spilled_rows = UsageRecord.objects.filter(agent__external_id="spilled")
    assert sorted(r.input_tokens for r in kept_rows) == list(range(1, 41))
    assert sorted(r.input_tokens for r in spilled_rows) == list(range(11, 61))


def test_an_agent_the_console_forgot_registers_again_and_obeys_the_new_record(asgi_server, make_agent):
    agent = make_agent(asgi_server.url, heartbeat_interval=0.2, socket=False)
    registered(agent)
    first = row()
    services.agent_desired_state_set(agent_id=first.pk, state=DesiredState.PAUSED, actor=None)
    services.agent_desired_state_set(agent_id=first.pk, state=DesiredState.RUNNING, actor=None)
    wait_for(lambda: agent.version == 3, what="version 3")
    AgentRow.objects.filter(pk=first.pk).delete()
    wait_for(lambda: AgentRow.objects.filter(external_id="sdk-1").exists(), what="the agent to register again")
    second = row()
    assert second.pk != first.pk and second.version == 1
    services.agent_desired_state_set(agent_id=second.pk, state=DesiredState.PAUSED, actor=None)
    wait_for(lambda: agent.state == "paused", timeout=3, what="the pause of the new record (version 2 < 3)")


def test_metrics_kept_through_an_outage_arrive_once_each_with_an_id(
    asgi_server_control: UvicornThread, make_agent, tenant_a
):
    server = asgi_server_control
    server.start()
    url = f"http://127.0.0.1:{server.port}"
    agent = make_agent(url, "metered", heartbeat_interval=0.1, flush_interval=0.1, socket=False)
    registered(agent)
    server.stop()  # heartbeats now find no console: nothing is sent, their samples are kept

    for n in range(5):
        agent.record_metrics(tokens=10, requests=1)
        # A heartbeat takes the sample and keeps it once its send has failed: wait for the
        # keeping, not only the taking (a read in between counted one sample short).
        wait_for(partial(lambda want: agent.buffered["metrics"] == want, n + 1), what="a heartbeat to keep its sample")
    kept = agent.buffered["metrics"]
    assert kept == 5 and agent.dropped["metrics"] == 0

    server.start()
    assert agent.flush(timeout=10)
    rows = MetricMinute.objects.filter(agent__external_id="metered")
    assert sum(r.tokens for r in rows) == 50 and sum(r.requests for r in rows) == 5
    assert MetricSampleId.objects.filter(tenant=tenant_a).count() == kept


def test_task_raises_past_a_cost_quota_the_console_counts_in_cents(asgi_server, make_agent, admin_a):
    from datetime import UTC, datetime
    from decimal import Decimal

    from audit.services import Actor
    from costs.services import PriceSpec, price_add

    price_add(
        spec=PriceSpec("gpt-4o", Decimal("2.5"), Decimal("10"), datetime(2026, 1, 1, tzinfo=UTC)), tenant_id=None,
        actor=Actor(user=admin_a),
    )  # fmt: skip
    agent = make_agent(asgi_server.url, heartbeat_interval=0.3)
    registered(agent)
    services.agent_quotas_set(agent_id=row().pk, quotas={"cost_usd": {"day": 100}})  # $1.00
    wait_for(lambda: agent.quotas == {"cost_usd": {"day": 100}}, what="the quota")
    with agent.task("costly"):
        agent.record_usage("gpt-4o", input_tokens=300_001, output_tokens=25_000)  # $1.0000025: 101 cents, rounded up
    agent.flush()
    wait_for(lambda: agent.used("cost_usd", "day") == 101, what="the console's count of what was spent")
    with pytest.raises(QuotaExceeded) as info, agent.task("over"):
        pytest.fail("a task started past the cost quota")
    assert (info.value.kind, info.value.period, info.value.used, info.value.limit) == ("cost_usd", "day", 101, 100)
