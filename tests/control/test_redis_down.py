"""Control during a Redis outage, for real: a private redis-server holds the cache, the
rate limiter and the locks, and is killed. Every control action, from the API and from
the page, is refused with E10306, changes nothing and leaves one audit row; a batch is
refused before anything is stored, and one whose task cannot be queued ends failed
instead of staying pending."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery, current_app
from django.test import Client, override_settings

from audit.models import AuditEntry
from audit.services import Actor
from control.bulk import NOT_QUEUED, bulk_start
from control.models import Batch, BatchItem, ItemOutcome
from control.rules import Action
from core.config import L10Settings
from core.errors import ErrorCode, InterfaceError
from fleet.models import Agent, DesiredState
from tenancy.services import personal_token_create
from tests.conftest import PrivateRedis, client_for
from tests.factories import AgentFactory

pytestmark = [pytest.mark.django_db, pytest.mark.redis]

# Each action with a body it would be carried out with, from a state it applies to.
ACTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "pause": (DesiredState.RUNNING, {"reason": "deploy", "minutes": 30, "mode": "now"}),
    "resume": (DesiredState.PAUSED, {"reason": "done"}),
    "stop": (DesiredState.RUNNING, {"reason": "runaway spend"}),
    "restart": (DesiredState.STOPPED, {"reason": "fixed"}),
    "quota": (DesiredState.RUNNING, {"quota_type": "tokens", "new_limit": 5000, "period": "day"}),
}


@contextlib.contextmanager
def redis_at(server: PrivateRedis) -> Iterator[None]:
    """The cache (and with it the rate limiter), the locks and the hub on ``server``."""
    environ = {**os.environ, "L10_REDIS_HOST": "127.0.0.1", "L10_REDIS_PORT": str(server.port), "L10_REDIS_DB": "0"}
    caches = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": server.url,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        }
    }
    with override_settings(L10=L10Settings(environ=environ), CACHES=caches):
        yield


def agent_in(tenant: Any, state: str) -> Agent:
    return AgentFactory.create(tenant=tenant, external_id=f"agent-{state}", desired_state=state)


def unchanged(agent: Agent) -> bool:
    now = Agent.objects.get(pk=agent.pk)
    return (now.desired_state, now.version, now.quotas) == (agent.desired_state, agent.version, agent.quotas)


def the_refusal(agent: Agent, action: str) -> AuditEntry:
    entry = AuditEntry.objects.get(resource_id=str(agent.pk)[:64])
    assert (entry.action, entry.outcome, entry.error_code) == (f"agent.{action}", "failed", "E10306")
    assert entry.tenant_id == agent.tenant_id
    return entry


@pytest.mark.parametrize("action", list(ACTIONS))
def test_the_control_api_answers_e10306_changes_nothing_and_audits_the_attempt(
    private_redis, tenant_a, admin_a, action
):
    state, body = ACTIONS[action]
    agent = agent_in(tenant_a, state)
    token = personal_token_create(user=admin_a, name="cli")[1]
    with redis_at(private_redis):
        private_redis.kill()
        response = Client().post(
            f"/api/v1/agents/{agent.pk}/{action}",
            json.dumps(body),
            content_type="application/json",
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": f"k-{action}"},
        )
    assert response.status_code == 503, response.content
    error = response.json()["error"]
    expected = InterfaceError(ErrorCode.CONTROL_UNAVAILABLE).as_dict()["error"]
    assert error["code"] == "E10306"
    assert (error["recoverable"], error["suggestion"]) == (expected["recoverable"], expected["suggestion"])
    assert "nothing was changed" in error["message"]
    assert unchanged(agent)
    the_refusal(agent, action)
    assert AuditEntry.objects.filter(resource_type="agent").count() == 1


def test_the_api_still_hides_another_tenants_agent_when_redis_is_down(private_redis, tenant_b, admin_a):
    agent = agent_in(tenant_b, DesiredState.RUNNING)
    token = personal_token_create(user=admin_a, name="cli")[1]
    with redis_at(private_redis):
        private_redis.kill()
        response = Client().post(
            f"/api/v1/agents/{agent.pk}/pause",
            "{}",
            content_type="application/json",
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 404
    assert unchanged(agent) and not AuditEntry.objects.filter(resource_type="agent").exists()


@pytest.mark.parametrize("action", list(ACTIONS))
def test_the_pages_control_form_says_e10306_changes_nothing_and_audits_the_attempt(
    private_redis, tenant_a, admin_a, action
):
    state, body = ACTIONS[action]
    agent = agent_in(tenant_a, state)
    form = {**body, "idempotency_key": f"form-{action}"}
    client = client_for(admin_a)
    with redis_at(private_redis):
        private_redis.kill()
        response = client.post(f"/t/acme/agents/{agent.pk}/control/{action}/", form, follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    assert "E10306" in page and "nothing was changed" in page
    assert unchanged(agent)
    the_refusal(agent, action)
    assert AuditEntry.objects.filter(resource_type="agent").count() == 1


def test_a_bulk_start_is_refused_before_anything_is_stored(private_redis, tenant_a, operator_a):
    agents = [agent_in(tenant_a, DesiredState.RUNNING), AgentFactory.create(tenant=tenant_a, external_id="two")]
    client = client_for(operator_a)
    form = {"action": "pause", "agent": [str(a.pk) for a in agents], "reason": "maintenance"}
    with redis_at(private_redis):
        private_redis.kill()
        response = client.post("/t/acme/control/bulk/start/", form, follow=True)
        with pytest.raises(InterfaceError) as refused:
            bulk_start(tenant=tenant_a, actor=Actor(user=operator_a), action=Action.PAUSE, agents=agents)
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == "/t/acme/agents/"
    page = response.content.decode()
    assert "E10306" in page and "the batch was not started and nothing was changed" in page
    assert refused.value.code == ErrorCode.CONTROL_UNAVAILABLE
    assert not Batch.objects.exists() and not BatchItem.objects.exists()
    assert all(unchanged(a) for a in agents)


@contextlib.contextmanager
def broker_at(url: str) -> Iterator[None]:
    """Tasks sent in this block go to a Celery app of their own whose broker is at ``url``;
    the console's app is current again afterwards."""
    console_app = current_app._get_current_object()
    app = Celery("broker-down", broker=url, set_as_current=False)
    app.set_current()
    try:
        yield
    finally:
        console_app.set_current()
        app.close()


@pytest.mark.postgres
def test_a_batch_whose_task_cannot_be_queued_ends_failed_not_pending(
    private_redis, tenant_a, operator_a, django_capture_on_commit_callbacks
):
    """The lock store answers, the broker does not (it went down between the two): the
    start commits, the send fails, and the batch ends with every item failed, nothing
    changed; its page says so."""
    agents = [agent_in(tenant_a, DesiredState.RUNNING), AgentFactory.create(tenant=tenant_a, external_id="two")]
    client = client_for(operator_a)
    form = {"action": "pause", "agent": [str(a.pk) for a in agents], "reason": "maintenance"}
    private_redis.kill()
    with broker_at(private_redis.url), django_capture_on_commit_callbacks(execute=True):
        response = client.post("/t/acme/control/bulk/start/", form)
    assert response.status_code == 302
    batch = Batch.objects.get()
    assert response["Location"] == f"/t/acme/control/batches/{batch.pk}/"
    assert batch.finished_at is not None
    items = list(batch.items.values_list("outcome", "error_code", "message"))
    assert items == [(ItemOutcome.FAILED, "E10306", NOT_QUEUED)] * 2
    assert all(unchanged(a) for a in agents)
    page = client.get(response["Location"]).content.decode()
    assert "could not be queued" in page
