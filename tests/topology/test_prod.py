"""The production topology, proven: the Procfile's processes (two web processes, a Celery
worker per queue, beat), started by honcho on PostgreSQL and Redis, and driven as people
and agents use them.

- news a worker publishes reaches the live pages on both web processes;
- a pause made through web process 1 shows on a page of web process 2, and at an SDK agent
  connected to web process 2, which pauses;
- a web process killed with SIGKILL loses nothing it acknowledged, and its clients (an SDK
  agent and a page, behind a stand-in for the load balancer) reconnect to the other.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User
from django.db.models import Sum
from django.urls import reverse
from django.utils import timezone
from l10_agent import Agent

from events.models import Event
from fleet.models import Agent as AgentRow
from fleet.models import DesiredState, MetricMinute, ObservedState
from tenancy import services as tenancy_services
from tests.conftest import client_for, wait_for
from tests.factories import AgentFactory
from tests.topology.clients import LivePage, wait_until_open
from tests.topology.conftest import Topology, Web
from tests.topology.proxy import FailoverProxy

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

OBSERVED = 'data-testid="observed-state">{}<'
DESIRED = 'data-testid="desired-state">{}<'


def session_of(user: User) -> str:
    return client_for(user).cookies["sessionid"].value


def control(web: Web, token: str, agent_id: object, action: str, *, key: str | None = None) -> httpx.Response:
    """The control API on one web process, with a personal token."""
    headers = {"Authorization": f"Bearer {token}"}
    if key:
        headers["Idempotency-Key"] = key
    body = {"reason": f"topology: {action}"}  # the same wherever it is sent: a retry with its key
    if action == "pause":
        body["mode"] = "now"
    return httpx.post(f"{web.url}/api/v1/agents/{agent_id}/{action}", json=body, headers=headers, timeout=10)


@pytest.fixture
def personal_token(operator_a: User) -> str:
    return tenancy_services.personal_token_create(user=operator_a, name="topology")[1]


@pytest.fixture
def pages() -> Iterator[list[LivePage]]:
    opened: list[LivePage] = []
    yield opened
    for page in opened:
        page.stop()


@pytest.fixture
def sdk_agents() -> Iterator[list[Agent]]:
    made: list[Agent] = []
    yield made
    for agent in made:
        agent.close(timeout=2)


def page_of(pages: list[LivePage], url: str, user: User, agent: AgentRow) -> LivePage:
    page = LivePage(url, "acme", f"view=agent&agent={agent.pk}", session_of(user)).start()
    pages.append(page)
    wait_until_open(page, 1)
    return page


def sdk_agent(agents: list[Agent], url: str, token: str) -> tuple[Agent, AgentRow]:
    agent = Agent(url, token, "sdk-1", labels={"team": "search"}, heartbeat_interval=0.5)
    agents.append(agent)
    assert agent.registered.wait(15), "the SDK agent did not register"
    wait_for(lambda: agent.connected, timeout=10, what="the SDK agent's control socket")
    return agent, AgentRow.objects.get(external_id="sdk-1")


def test_news_a_worker_publishes_reaches_live_pages_on_both_web_processes(
    topology: Topology, tenant_a, viewer_a, pages
):
    one, two = topology.webs
    agent = AgentFactory.create(
        tenant=tenant_a,
        external_id="quiet-1",
        observed_state=ObservedState.RUNNING,
        last_heartbeat_at=timezone.now(),
    )
    on_one = page_of(pages, one.url, viewer_a, agent)
    on_two = page_of(pages, two.url, viewer_a, agent)
    # Silent for an hour now: beat's sweep, run by the control worker, marks it and
    # publishes the change; each web process's hub hands it to its own page.
    AgentRow.objects.filter(pk=agent.pk).update(last_heartbeat_at=timezone.now() - timedelta(hours=1))
    unresponsive = OBSERVED.format("Unresponsive")
    wait_for(lambda: on_one.shows(unresponsive) and on_two.shows(unresponsive), timeout=15, what="both pages")

    def marked(page: LivePage) -> dict[str, Any]:
        return next(f for f in page.frames() if f["type"] == "fragments" and unresponsive in f["html"])

    assert marked(on_one)["seq"] == marked(on_two)["seq"]  # one event, numbered once
    assert Event.objects.filter(type="agent.unresponsive", agent=agent).count() == 1


def test_a_pause_through_one_web_process_reaches_the_page_and_the_sdk_agent_on_the_other(
    topology: Topology, token_a, personal_token, viewer_a, pages, sdk_agents
):
    one, two = topology.webs
    agent, row = sdk_agent(sdk_agents, two.url, token_a)
    page = page_of(pages, two.url, viewer_a, row)

    answer = control(one, personal_token, row.pk, "pause")
    assert answer.status_code == 200, answer.text
    assert answer.json()["new_state"] == "paused"

    wait_for(lambda: agent.state == "paused", timeout=5, what="the SDK agent to hear the pause")
    with pytest.raises(TimeoutError), agent.task("crawl", timeout=0.3):
        pytest.fail("a paused agent started a task")
    wait_for(lambda: agent.observed_state == "paused", timeout=5, what="the SDK agent to settle")
    wait_for(
        lambda: AgentRow.objects.get(pk=row.pk).observed_state == ObservedState.PAUSED,
        timeout=5,
        what="the agent's confirmation",
    )
    wait_for(lambda: page.shows(OBSERVED.format("Paused")), timeout=5, what="web 2's page to show the pause")
    html = httpx.get(
        f"{two.url}{reverse('dashboard:agent', args=['acme', row.pk])}",
        cookies={"sessionid": session_of(viewer_a)},
        timeout=10,
    ).text
    assert DESIRED.format("Paused") in html and OBSERVED.format("Paused") in html


class Writer(threading.Thread):
    """Writes sent one request at a time to one web process until it stops answering: each
    an event of its own (by id), or a heartbeat counting one token; those it acknowledged
    are kept."""

    def __init__(self, web: Web, token: str, kind: str) -> None:
        super().__init__(name=f"writer-{kind}", daemon=True)
        self.web, self.token, self.kind = web, token, kind
        self.acknowledged: list[str] = []
        self.failure: str | None = None
        self.done = threading.Event()

    def _send(self, http: httpx.Client) -> tuple[str, httpx.Response]:
        if self.kind == "events":
            uid = str(uuid.uuid4())
            event = {"id": uid, "type": "topology.write", "at": timezone.now().isoformat()}
            return uid, http.post(f"{self.web.url}/api/v1/ingest/events", json={"events": [event]})
        heartbeat = {"state": "running", "metrics": {"tokens": 1}}
        return "", http.post(f"{self.web.url}/api/v1/ingest/agents/writer-1/heartbeat", json=heartbeat)

    def run(self) -> None:
        try:
            with httpx.Client(timeout=5, headers={"Authorization": f"Bearer {self.token}"}) as http:
                while not self.done.is_set():
                    try:
                        uid, answer = self._send(http)
                    except httpx.HTTPError as exc:
                        self.failure = repr(exc)
                        return
                    if answer.status_code == 429:  # over the token's rate: not acknowledged, try again
                        continue
                    if answer.status_code != 200:
                        self.failure = f"{answer.status_code}: {answer.text[:300]}"
                        return
                    self.acknowledged.append(uid)
        finally:
            self.done.set()


def test_a_killed_web_process_loses_nothing_it_acknowledged_and_its_clients_reconnect_to_the_other(
    topology: Topology, token_a, personal_token, viewer_a, pages, sdk_agents
):
    one, two = topology.webs
    balancer = FailoverProxy([two.port, one.port])  # web 2 first, while it answers
    try:
        agent, row = sdk_agent(sdk_agents, balancer.url, token_a)
        page = page_of(pages, balancer.url, viewer_a, row)
        assert balancer.went_to(two.port, "/ws/agent") and balancer.went_to(two.port, "/ws/live/") == 1

        # Acknowledged by web 2 before it dies: a pause, events and heartbeats.
        key = str(uuid.uuid4())
        paused = control(two, personal_token, row.pk, "pause", key=key)
        assert paused.status_code == 200, paused.text
        wait_for(lambda: agent.observed_state == "paused", timeout=5, what="the SDK agent to pause")
        registered = httpx.post(
            f"{two.url}/api/v1/ingest/register",
            json={"external_id": "writer-1"},
            headers={"Authorization": f"Bearer {token_a}"},
            timeout=10,
        )
        assert registered.status_code == 201, registered.text
        writers = [Writer(two, token_a, "events"), Writer(two, token_a, "heartbeats")]
        for writer in writers:
            writer.start()
        wait_for(lambda: all(len(w.acknowledged) >= 25 or w.done.is_set() for w in writers), timeout=15, what="writes")
        assert [w.failure for w in writers] == [None, None]

        topology.kill(two)  # while the writers are sending
        for writer in writers:
            assert writer.done.wait(10), f"{writer.name} went on with web 2 dead"
            assert writer.failure is not None
        events, heartbeats = writers

        # Everything acknowledged is in the database: each event, each heartbeat's token
        # (and at most the one heartbeat sent when the process died, unanswered).
        acknowledged = {uuid.UUID(uid) for uid in events.acknowledged}
        stored = set(Event.objects.filter(uid__in=acknowledged).values_list("uid", flat=True))
        assert stored == acknowledged, f"{len(acknowledged - stored)} acknowledged events lost"
        tokens = MetricMinute.objects.filter(agent__external_id="writer-1").aggregate(n=Sum("tokens"))["n"]
        assert len(heartbeats.acknowledged) <= tokens <= len(heartbeats.acknowledged) + 1
        stored_row = AgentRow.objects.get(pk=row.pk)
        assert (stored_row.desired_state, stored_row.version) == (DesiredState.PAUSED, paused.json()["version"])
        # The pause, sent again with its key to the survivor, is answered from what web 2 stored.
        again = control(one, personal_token, row.pk, "pause", key=key)
        assert again.status_code == 200 and again.headers.get("Idempotent-Replayed") == "true"
        assert again.json() == paused.json()

        # The clients come back through the balancer, to web 1.
        wait_for(
            lambda: balancer.went_to(one.port, "/ws/agent") >= 1 and agent.connected,
            timeout=15,
            what="the SDK agent's socket on web 1",
        )
        wait_until_open(page, 2, timeout=15)  # hello, or resync: it missed news while away
        assert balancer.went_to(one.port, "/ws/live/") == 1

        # And web 1 serves them: a resume through it reaches the agent and the page.
        resumed = control(one, personal_token, row.pk, "resume")
        assert resumed.status_code == 200, resumed.text
        wait_for(lambda: agent.state == "running", timeout=5, what="the SDK agent to hear the resume")
        with agent.task("crawl", timeout=5):
            pass
        wait_for(lambda: page.shows(OBSERVED.format("Running"), connection=2), timeout=10, what="the page")
    finally:
        for made in sdk_agents:
            made.close(timeout=2)
        sdk_agents.clear()
        balancer.close()

    # Web 2 comes back on its port, as systemd would restart it.
    topology.restart(two)
