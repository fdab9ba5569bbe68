"""``agent.request_approval`` against a live console (uvicorn over the test database): a
person decides through ``approvals.services.decide`` and the waiting call returns, over
the socket or a heartbeat's answer; asking again after a restart, a console outage, a
stop, refusals, the async twin, and the timeouts."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
from django.utils import timezone
from l10_agent import Agent, AgentStopped, ApprovalRefused, Decision

from approvals.models import ApprovalRequest, State
from approvals.services import decide, expire_due
from audit.services import Actor
from control.rules import Action, ControlRequest
from control.services import control_execute
from fleet import services
from fleet.models import DesiredState
from tests.conftest import LiveServer, UvicornThread, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

MAIL = ("email.send", "Mail 40 customers about the outage")


@pytest.fixture
def make_agent(token_a: str) -> Iterator[Callable[..., Agent]]:
    made: list[Agent] = []

    def make(server_url: str, external_id: str = "asker", **kwargs: Any) -> Agent:
        agent = Agent(server_url, token_a, external_id, **kwargs)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.close(timeout=2)


class Asking:
    """A call that blocks, run on a thread of its own so the test can decide meanwhile."""

    def __init__(self, call: Callable[[], Decision]) -> None:
        self.done = threading.Event()
        self.decision: Decision | None = None
        self.error: BaseException | None = None
        self._call = call
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            self.decision = self._call()
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    def result(self, within: float) -> Decision:
        assert self.done.wait(within), f"the call did not return within {within} s"
        if self.error is not None:
            raise self.error
        assert self.decision is not None
        return self.decision


def asked(external_id: str = "asker") -> ApprovalRequest:
    found = wait_for(
        lambda: ApprovalRequest.objects.filter(agent__external_id=external_id).first(), what="the request to be stored"
    )
    assert isinstance(found, ApprovalRequest)
    return found


def ready(agent: Agent, *, socket: bool = True) -> None:
    assert agent.registered.wait(10), "the agent did not register"
    if socket:
        wait_for(lambda: agent.connected, what="the agent socket")


def decided_by(user: Any, request: ApprovalRequest, *, approve: bool = True, comment: str = "") -> None:
    decide(
        request_id=request.pk, tenant_id=request.tenant_id, actor=Actor(user=user), role="operator", approve=approve,
        comment=comment,
    )  # fmt: skip


@pytest.mark.parametrize(("approve", "comment"), [(True, ""), (False, "Not during the incident review")])
def test_a_person_decides_and_the_waiting_call_returns_at_once_over_the_socket(
    asgi_server: LiveServer, make_agent, operator_a, approve, comment
):
    # A heartbeat a minute away: only the socket can tell the decision within a second.
    agent = make_agent(asgi_server.url, heartbeat_interval=60)
    ready(agent)
    asking = Asking(lambda: agent.request_approval(*MAIL, {"to": 40}))
    request = asked()
    assert (request.action, request.details, request.state) == ("email.send", {"to": 40}, State.PENDING)
    assert not asking.done.is_set()

    decided_by(operator_a, request, approve=approve, comment=comment)

    decision = asking.result(within=1.0)
    assert decision.approved is approve
    assert decision.state == ("approved" if approve else "rejected")
    assert (decision.decided_by, decision.comment) == (operator_a.username, comment)
    assert decision.approval_id == str(request.pk) and decision.key == request.key
    assert decision.decided_at is not None and decision.decided_at.tzinfo is not None


def test_without_a_socket_the_decision_comes_in_a_heartbeats_answer(asgi_server, make_agent, operator_a):
    agent = make_agent(asgi_server.url, heartbeat_interval=0.2, socket=False)
    ready(agent, socket=False)
    asking = Asking(lambda: agent.request_approval(*MAIL))
    request = asked()

    decided_by(operator_a, request, approve=False, comment="Wrong list")

    decision = asking.result(within=3.0)
    assert (decision.approved, decision.state, decision.comment) == (False, "rejected", "Wrong list")
    assert not agent.connected


def test_an_agent_that_asks_again_with_its_key_after_a_restart_gets_the_decision_at_once(
    asgi_server, make_agent, operator_a
):
    first = make_agent(asgi_server.url, heartbeat_interval=60)
    ready(first)
    asking = Asking(lambda: first.request_approval("deploy.run", "Deploy v42 to prod", key="deploy-v42"))
    request = asked()
    first.close(graceful=False)  # a crash: the waiting call ends, the request stays
    with pytest.raises(AgentStopped):
        asking.result(within=2.0)

    decided_by(operator_a, request)

    second = make_agent(asgi_server.url, heartbeat_interval=60)
    again = Asking(lambda: second.request_approval("deploy.run", "Deploy v42 to prod", key="deploy-v42"))
    decision = again.result(within=5.0)
    assert decision.approved and decision.approval_id == str(request.pk) and decision.key == "deploy-v42"
    assert ApprovalRequest.objects.count() == 1


def test_a_request_asked_while_the_console_is_down_is_sent_when_it_is_back_and_stored_once(
    asgi_server_control: UvicornThread, make_agent, operator_a
):
    server = asgi_server_control
    server.start()
    agent = make_agent(f"http://127.0.0.1:{server.port}", heartbeat_interval=0.2)
    ready(agent)
    server.stop()

    asking = Asking(lambda: agent.request_approval(*MAIL, key="mail-outage"))
    assert not asking.done.wait(1.0), "the call returned while the console was down"
    assert not ApprovalRequest.objects.exists()

    server.start()
    request = asked()
    decided_by(operator_a, request)
    assert asking.result(within=5.0).approved
    assert ApprovalRequest.objects.get().key == "mail-outage"


def test_a_decision_made_while_the_console_was_down_reaches_the_waiting_call_once_it_is_back(
    asgi_server_control: UvicornThread, make_agent, operator_a
):
    server = asgi_server_control
    server.start()
    agent = make_agent(f"http://127.0.0.1:{server.port}", heartbeat_interval=0.2)
    ready(agent)
    asking = Asking(lambda: agent.request_approval(*MAIL))
    request = asked()
    server.stop()

    decided_by(operator_a, request)  # said to no socket: the console's server is down
    assert not asking.done.wait(0.5)

    server.start()
    assert asking.result(within=5.0).approved
    assert ApprovalRequest.objects.count() == 1


def test_many_callers_of_several_agents_wait_at_once_and_each_gets_its_own_decision(
    asgi_server, make_agent, operator_a
):
    agents = [make_agent(asgi_server.url, f"asker-{n}", heartbeat_interval=60) for n in range(2)]
    for agent in agents:
        ready(agent)
    callers = {
        (agent.external_id, n): Asking(partial(agent.request_approval, "file.delete", f"Delete batch {n}", key=f"b{n}"))
        for agent in agents
        for n in range(3)
    }
    twin = Asking(partial(agents[0].request_approval, "file.delete", "Delete batch 0", key="b0"))  # the same key
    stored = wait_for(lambda: ApprovalRequest.objects.count() == 6 and list(ApprovalRequest.objects.all()))
    assert isinstance(stored, list)

    for request in stored:
        approve = request.key != "b1"
        decided_by(operator_a, request, approve=approve, comment="" if approve else "Batch 1 is still in use")

    for (external_id, n), asking in callers.items():
        decision = asking.result(within=2.0)
        request = ApprovalRequest.objects.get(agent__external_id=external_id, key=f"b{n}")
        assert (decision.approval_id, decision.approved) == (str(request.pk), n != 1)
    assert twin.result(within=2.0) == callers[("asker-0", 0)].result(within=0)


def test_a_stop_ends_the_waiting_call_and_refuses_new_ones(asgi_server, make_agent, admin_a):
    agent = make_agent(asgi_server.url, heartbeat_interval=60)
    ready(agent)
    asking = Asking(lambda: agent.request_approval(*MAIL))
    request = asked()

    control_execute(
        actor=Actor(user=admin_a), request=ControlRequest(Action.STOP, str(request.agent_id), reason="runaway mailer")
    )

    with pytest.raises(AgentStopped):
        asking.result(within=1.0)
    with pytest.raises(AgentStopped):
        agent.request_approval(*MAIL)
    assert ApprovalRequest.objects.get().pk == request.pk  # still pending: the console expires it


def test_a_paused_agent_keeps_waiting_and_gets_its_decision(asgi_server, make_agent, operator_a):
    agent = make_agent(asgi_server.url, heartbeat_interval=60)
    ready(agent)
    asking = Asking(lambda: agent.request_approval(*MAIL))
    request = asked()
    services.agent_desired_state_set(agent_id=request.agent_id, state=DesiredState.PAUSED, actor=None)
    wait_for(lambda: agent.state == "paused", what="the pause")
    assert not asking.done.is_set()

    decided_by(operator_a, request)
    assert asking.result(within=1.0).approved


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ({"on_timeout": "ignore"}, "E10353"),
        ({"timeout": timedelta(seconds=5)}, "E10352"),
        ({"timeout": 8 * 24 * 3600}, "E10352"),
    ],
)
def test_a_refused_request_raises_with_the_consoles_code_and_is_not_sent_again(asgi_server, make_agent, extra, code):
    agent = make_agent(asgi_server.url, heartbeat_interval=60)
    ready(agent, socket=False)
    with pytest.raises(ApprovalRefused) as refused:
        Asking(lambda: agent.request_approval(*MAIL, **extra)).result(within=5.0)
    assert refused.value.code == code and refused.value.status is not None and refused.value.message
    assert not ApprovalRequest.objects.exists()


def test_details_that_are_not_json_are_refused_before_anything_is_sent(asgi_server, make_agent):
    agent = make_agent(asgi_server.url, heartbeat_interval=60)
    with pytest.raises(ValueError, match="JSON"):
        agent.request_approval(*MAIL, {"ratio": float("nan")})
    with pytest.raises(ValueError, match="JSON"):
        agent.request_approval(*MAIL, {"when": object()})
    assert not ApprovalRequest.objects.exists()


def test_the_async_twin_waits_without_blocking_its_loop(asgi_server, make_agent, operator_a):
    agent = make_agent(asgi_server.url, heartbeat_interval=60)
    ready(agent)
    ticks: list[int] = []

    async def ask() -> Decision:
        async def tick() -> None:
            while True:
                ticks.append(1)
                await asyncio.sleep(0.01)

        ticking = asyncio.ensure_future(tick())
        try:
            return await agent.arequest_approval(*MAIL, on_timeout="approve", key="async-1")
        finally:
            ticking.cancel()

    asking = Asking(lambda: asyncio.run(ask()))
    request = asked()
    wait_for(lambda: len(ticks) > 5, what="the caller's loop to run while it waits")
    decided_by(operator_a, request, approve=False, comment="No")
    decision = asking.result(within=1.0)
    assert (decision.approved, decision.state, decision.key) == (False, "rejected", "async-1")


def test_a_cancelled_async_call_stops_waiting(asgi_server, make_agent, operator_a):
    agent = make_agent(asgi_server.url, heartbeat_interval=60)
    ready(agent)

    async def ask_then_give_up() -> None:
        task = asyncio.ensure_future(agent.arequest_approval(*MAIL))
        await asyncio.to_thread(asked)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(ask_then_give_up())
    # The request stays on the console; the agent goes on working and asking.
    asking = Asking(lambda: agent.request_approval("email.send", "Mail them again", key="second"))
    second = wait_for(lambda: ApprovalRequest.objects.filter(key="second").first(), what="the second request")
    assert isinstance(second, ApprovalRequest)
    decided_by(operator_a, second)
    assert asking.result(within=1.0).approved


def test_a_request_the_console_expires_returns_what_on_timeout_says(asgi_server, make_agent):
    agent = make_agent(asgi_server.url, heartbeat_interval=60)
    ready(agent)
    asking = Asking(lambda: agent.request_approval(*MAIL, timeout=timedelta(seconds=10), on_timeout="approve"))
    asked()

    assert expire_due(now=timezone.now() + timedelta(seconds=11)) == 1

    decision = asking.result(within=1.0)
    assert (decision.approved, decision.state, decision.decided_by) == (True, "expired", "timeout")


def test_with_the_console_unreachable_past_the_timeout_on_timeout_decides_on_the_agents_side(
    asgi_server_control: UvicornThread, make_agent
):
    server = asgi_server_control
    server.start()
    agent = make_agent(f"http://127.0.0.1:{server.port}", heartbeat_interval=0.2, approval_grace=0.5)
    ready(agent)
    asking = Asking(lambda: agent.request_approval(*MAIL, timeout=10, key="unreachable"))
    request = asked()
    server.stop()

    decision = asking.result(within=20.0)  # the 10 s timeout, the grace, and one failed read
    assert (decision.approved, decision.state) == (False, "expired")
    assert decision.decided_by == "timeout (console unreachable)"
    assert (decision.approval_id, decision.key) == (str(request.pk), "unreachable")
    request.refresh_from_db()
    assert request.state == State.PENDING  # the console's own expiry decides it, the same way
