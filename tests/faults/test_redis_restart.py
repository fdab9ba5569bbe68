"""Redis killed mid-traffic and started again, empty, on the same port, for real: the console
runs in processes of its own (uvicorn, a Celery worker) on a private redis-server and is
never restarted. While Redis is away every refusal is a clear 503 with its code, and nothing
of a refused request is stored; once it is back, the sockets that stayed open hear events
again, control and ingest work, batches run once, and nothing is lost or done twice
(docs/operations.md, "Faults")."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict
from uuid import UUID, uuid4

import httpx
import pytest
from django.db.models import Sum
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from audit.models import AuditEntry
from control.models import Batch, BatchItem, ItemOutcome
from costs.models import UsageRecord
from events.models import Event
from fleet.models import Agent, DesiredState, MetricMinute, MetricSampleId
from tenancy.services import personal_token_create
from tests.conftest import LiveServer, PrivateRedis, celery_worker, client_for, uvicorn_processes, wait_for
from tests.factories import AgentFactory
from tests.faults.test_postgres_terminated import second_connection

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]
Frame = dict[str, Any]


class RedisEnv(TypedDict):
    L10_REDIS_HOST: str
    L10_REDIS_PORT: str
    L10_REDIS_DB: str


def on(redis: PrivateRedis) -> RedisEnv:
    """The environment of a console process whose Redis (cache, locks, hub, broker) is ``redis``."""
    return {"L10_REDIS_HOST": "127.0.0.1", "L10_REDIS_PORT": str(redis.port), "L10_REDIS_DB": "0"}


# --- sockets ------------------------------------------------------------------------------


def frames_until(ws: ClientConnection, wanted: Callable[[Frame], bool], *, timeout: float = 15) -> Frame:
    """Read frames (answering pings) until one is ``wanted``; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while (left := deadline - time.monotonic()) > 0:
        try:
            message = json.loads(ws.recv(timeout=left))
        except TimeoutError:
            break
        if message.get("type") == "ping":
            ws.send('{"type":"pong"}')
        elif wanted(message):
            return dict(message)
        seen.append(str(message.get("type")))
    raise AssertionError(f"no such frame within {timeout} s; saw {seen}")


def live_page(server: LiveServer, user: Any, agent: Agent) -> ClientConnection:
    """The live socket of the agent's page, as a signed-in browser opens it."""
    return connect(
        f"{server.ws_url}/ws/live/acme/?view=agent&agent={agent.pk}",
        additional_headers={"Cookie": f"sessionid={client_for(user).cookies['sessionid'].value}"},
        origin=Origin(server.url),
        open_timeout=10,
    )


def agent_socket(server: LiveServer, token: str, agent: Agent) -> ClientConnection:
    return connect(
        f"{server.ws_url}/ws/agent?external_id={agent.external_id}",
        additional_headers={"Authorization": f"Bearer {token}"},
        open_timeout=10,
    )


def control_frame(state: str, version: int) -> Callable[[Frame], bool]:
    return lambda f: f["type"] == "control" and (f["desired_state"], f["version"]) == (state, version)


def summary_shows(state: str) -> Callable[[Frame], bool]:
    return lambda f: f["type"] == "fragments" and f'state-{state}" data-testid="desired-state"' in f["html"]


# --- ingest traffic -----------------------------------------------------------------------


@dataclass
class Sent:
    path: str
    body: dict[str, Any]
    status: int
    answer: dict[str, Any]
    retry_after: str | None


def ingest_request(n: int) -> tuple[str, dict[str, Any]]:
    """The ``n``th request of a fleet's traffic: a heartbeat of ``beat-1`` (1 token), or a
    batch for ``worker-1`` of two usage records, metric samples (5 tokens each) or events,
    each record with an id of its own, as the SDK sends them."""
    at = datetime.now(UTC).isoformat()
    record: dict[str, Any]
    if n % 4 == 0:
        return "/agents/beat-1/heartbeat", {"state": "running", "metrics": {"tokens": 1}}
    if n % 4 == 1:
        path, key, record = "/usage", "records", {"model": "gpt-4o", "input_tokens": 10}
    elif n % 4 == 2:
        path, key, record = "/metrics", "samples", {"tokens": 5}
    else:
        path, key, record = "/events", "events", {"type": "task.completed"}
    return path, {key: [{**record, "external_id": "worker-1", "at": at, "id": str(uuid4())} for _ in range(2)]}


class Traffic(threading.Thread):
    """Ingest, one request after another until stopped, every answer kept."""

    def __init__(self, server: LiveServer, token: str) -> None:
        super().__init__(name="ingest-traffic", daemon=True)
        self.base, self.token = f"{server.url}/api/v1/ingest", token
        self.sent: list[Sent] = []
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {self.token}"}, timeout=15) as http:
            n = 0
            while not self.halt.is_set():
                path, body = ingest_request(n)
                self.sent.append(send(http, f"{self.base}{path}", body))
                n += 1

    def count(self, status: int, *, since: int = 0) -> int:
        return sum(1 for s in self.sent[since:] if s.status == status)

    def __enter__(self) -> Traffic:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt.set()
        self.join(timeout=30)


def send(http: httpx.Client, url: str, body: dict[str, Any]) -> Sent:
    answer = http.post(url, json=body)
    try:
        said = answer.json()
    except ValueError:
        said = {"text": answer.text[:300]}
    return Sent(url.rsplit("/api/v1/ingest", 1)[-1], body, answer.status_code, said, answer.headers.get("Retry-After"))


def control(http: httpx.Client, agent: Agent, action: str, key: str) -> httpx.Response:
    body = {"reason": "redis restart"}
    return http.post(f"/api/v1/agents/{agent.pk}/{action}", json=body, headers={"Idempotency-Key": key})


def stored_once(sent: list[Sent]) -> None:
    """Every record of an accepted batch is stored, once; nothing of a refused heartbeat is."""
    batches = [s for s in sent if s.status == 200 and not s.path.endswith("/heartbeat")]

    def ids(path: str, key: str) -> list[str]:
        return sorted(r["id"] for s in batches if s.path == path for r in s.body[key])

    def tokens(external_id: str) -> int:
        return int(MetricMinute.objects.filter(agent__external_id=external_id).aggregate(t=Sum("tokens"))["t"] or 0)

    assert sorted(str(u) for u in UsageRecord.objects.values_list("uid", flat=True)) == ids("/usage", "records")
    assert sorted(str(u) for u in Event.objects.exclude(uid=None).values_list("uid", flat=True)) == ids(
        "/events", "events"
    )
    samples = ids("/metrics", "samples")
    assert sorted(str(u) for u in MetricSampleId.objects.values_list("sample_id", flat=True)) == samples
    assert tokens("worker-1") == 5 * len(samples)
    assert tokens("beat-1") == sum(1 for s in sent if s.path.endswith("/heartbeat") and s.status == 200)


def test_control_ingest_and_sockets_come_back_with_redis_without_a_restart(private_redis, tenant_a, admin_a, token_a):
    agent = AgentFactory.create(tenant=tenant_a, external_id="worker-1", desired_state=DesiredState.RUNNING)
    AgentFactory.create(tenant=tenant_a, external_id="beat-1")
    version = agent.version
    person = personal_token_create(user=admin_a, name="cli")[1]
    with (
        uvicorn_processes(1, **on(private_redis)) as (server,),
        httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {person}"}, timeout=15) as http,
        live_page(server, admin_a, agent) as page,
        agent_socket(server, token_a, agent) as sock,
    ):
        frames_until(page, lambda f: f["type"] in ("hello", "resync"))
        frames_until(sock, control_frame("running", version))
        with Traffic(server, token_a) as traffic:
            # Before: a pause and a resume reach the agent and its page while agents report.
            assert control(http, agent, "pause", "before-1").status_code == 200
            frames_until(sock, control_frame("paused", version + 1))
            frames_until(page, summary_shows("paused"))
            assert control(http, agent, "resume", "before-2").status_code == 200
            frames_until(sock, control_frame("running", version + 2))
            frames_until(page, summary_shows("running"))
            wait_for(lambda: traffic.count(200) >= 12, what="ingest to flow")

            private_redis.kill()
            killed = len(traffic.sent)
            wait_for(lambda: traffic.count(503, since=killed) >= 8, what="ingest to be refused")
            refused = control(http, agent, "pause", "during-1")
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "E10306"
            assert "nothing was changed" in refused.json()["error"]["message"]
            assert http.get("/readyz").status_code == 503

            private_redis.restart()
            back = len(traffic.sent)
            wait_for(lambda: traffic.count(200, since=back) >= 8, what="ingest to be accepted again")

        # The sockets stayed open; once the hub has subscribed again, each is told it may
        # have missed events: the page reads its parts again, the agent gets its control.
        frames_until(sock, control_frame("running", version + 2))
        frames_until(page, lambda f: f["type"] == "resync")
        # Control works again, once per key, and both sockets hear it.
        paused = control(http, agent, "pause", "after-1")
        assert paused.status_code == 200, paused.text
        assert paused.json()["version"] == version + 3
        frames_until(sock, control_frame("paused", version + 3))
        frames_until(page, summary_shows("paused"))
        replay = control(http, agent, "pause", "after-1")
        assert replay.headers["Idempotent-Replayed"] == "true" and replay.json()["version"] == version + 3
        assert http.get("/readyz").status_code == 200

        # Each refusal said so and asked for a retry; the SDK sends the batch again, with
        # the same ids, and it is stored now.
        assert {s.status for s in traffic.sent} == {200, 503}
        refusals = [s for s in traffic.sent if s.status == 503]
        for s in refusals:
            assert (s.answer["error"]["code"], s.answer["error"]["recoverable"], s.retry_after) == ("E10902", True, "1")
        with httpx.Client(headers={"Authorization": f"Bearer {token_a}"}, timeout=15) as agents:
            again = [send(agents, f"{server.url}/api/v1/ingest{s.path}", s.body) for s in refusals]
            accepted = next(s for s in traffic.sent if s.path == "/usage" and s.status == 200)
            repeated = send(agents, f"{server.url}/api/v1/ingest/usage", accepted.body)

    assert {s.status for s in again} == {200}
    assert all(s.answer == {"accepted": 2, "duplicates": 0} for s in again if not s.path.endswith("/heartbeat"))
    assert (repeated.status, repeated.answer) == (200, {"accepted": 0, "duplicates": 2})
    stored_once(traffic.sent + again)
    # One change per accepted control call, each audited once; the refused one audited as such.
    assert Agent.objects.get(pk=agent.pk).version == version + 3
    audited = AuditEntry.objects.filter(resource_id=str(agent.pk))
    assert sorted(audited.values_list("action", "outcome", "error_code")) == [
        ("agent.pause", "failed", "E10306"),
        ("agent.pause", "success", ""),
        ("agent.pause", "success", ""),
        ("agent.resume", "success", ""),
    ]


# --- bulk ---------------------------------------------------------------------------------


@contextlib.contextmanager
def signed_in(server: LiveServer, user: Any) -> Iterator[httpx.Client]:
    """A browser's session on the console's pages, with the CSRF token its forms carry."""
    session = client_for(user).cookies["sessionid"].value
    with httpx.Client(base_url=server.url, timeout=15, cookies={"sessionid": session}) as http:
        assert http.get("/t/acme/agents/").status_code == 200
        yield http


def bulk(http: httpx.Client, action: str, agents: list[Agent]) -> httpx.Response:
    form = {"action": action, "agent": [str(a.pk) for a in agents], "reason": "redis restart"}
    return http.post("/t/acme/control/bulk/start/", data={**form, "csrfmiddlewaretoken": http.cookies["csrftoken"]})


def finished(batch_id: UUID) -> bool:
    return Batch.objects.filter(pk=batch_id, finished_at__isnull=False).exists()


def test_batches_run_once_across_a_redis_restart_on_the_same_worker(private_redis, tmp_path, tenant_a, operator_a):
    agents = [AgentFactory.create(tenant=tenant_a, external_id=f"bulk-{n}") for n in range(4)]
    with (
        celery_worker(tmp_path, queues="control", beat=False, **on(private_redis)) as worker,
        uvicorn_processes(1, **on(private_redis)) as (server,),
        signed_in(server, operator_a) as http,
        second_connection() as holder,
        second_connection(autocommit=True) as watcher,
    ):
        # A pause of four agents is running when Redis dies: the last one's row is held
        # (NO KEY UPDATE: the batch's items may still name it), so the run waits on it.
        holder.execute("SELECT 1 FROM fleet_agent WHERE id = %s FOR NO KEY UPDATE", [agents[-1].pk])
        started = bulk(http, "pause", agents)
        assert started.status_code == 302, started.text
        running = Batch.objects.get()
        wait_for(
            lambda: watcher.execute(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone(),
            timeout=30, what="the batch to wait on the held agent",
        )  # fmt: skip
        private_redis.kill()
        holder.rollback()
        # It held that agent's lock already: it finishes, its broker gone.
        wait_for(lambda: finished(running.pk), timeout=30, what="the running batch to finish")
        # A batch asked for while Redis is away is refused; nothing is stored.
        refused = bulk(http, "resume", agents)
        assert (refused.status_code, refused.headers["Location"]) == (302, "/t/acme/agents/")
        page = http.get("/t/acme/agents/").text
        assert "E10306" in page and "the batch was not started and nothing was changed" in page
        assert Batch.objects.count() == 1

        private_redis.restart()
        # The same worker, never restarted, runs a batch started once Redis is back.
        after = bulk(http, "resume", agents)
        assert after.status_code == 302, after.text
        resumed = Batch.objects.exclude(pk=running.pk).get()
        wait_for(lambda: finished(resumed.pk), timeout=30, what="the batch started after the restart to finish")
        assert worker.poll() is None

    for batch in (running, resumed):
        outcomes = list(BatchItem.objects.filter(batch=batch).values_list("outcome", flat=True))
        assert outcomes == [ItemOutcome.SUCCESS] * len(agents), outcomes
    for before in agents:  # paused once and resumed once: two versions on
        now = Agent.objects.get(pk=before.pk)
        assert (now.desired_state, now.version) == (DesiredState.RUNNING, before.version + 2)
    audited = AuditEntry.objects.filter(resource_type="agent")
    assert sorted(audited.values_list("action", "batch_id", "resource_id")) == sorted(
        (action, batch.pk, str(a.pk)) for action, batch in (("agent.pause", running), ("agent.resume", resumed))
        for a in agents
    )  # fmt: skip
