"""Schemathesis against the OpenAPI schema the live server serves: for every route, data
that fits the schema and data that does not, a bounded number of examples each. The
answer is never a 500, its status is one the schema documents, and its body matches the
schema (the route's shape, or the error shape of docs/api.md)."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tenancy.services import personal_token_create
from tests.factories import AgentFactory

pytestmark = [pytest.mark.django_db(transaction=True)]

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 25


def _operations(url: str) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{url}/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 10  # five ingest routes, five control routes
    return operations


def _fuzz(strategy: Any, base_url: str, statuses: set[int]) -> None:
    @settings(max_examples=EXAMPLES, suppress_health_check=list(HealthCheck))  # and the suite's profile
    @given(case=strategy)
    def check(case: object) -> None:
        response = case.call(base_url=base_url)  # type: ignore[attr-defined]
        case.validate_response(response, checks=CHECKS)  # type: ignore[attr-defined]
        statuses.add(response.status_code)

    check()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_route_answers_as_its_schema_says(asgi_server, token_a, tenant_a, admin_a, mode):
    agent = AgentFactory.create(tenant=tenant_a, external_id="worker-1")
    personal = personal_token_create(user=admin_a, name="schema")[1]
    seen: dict[str, set[int]] = {}
    for operation in _operations(asgi_server.url):
        path = operation.path
        token = personal if path.startswith(("/api/v1/agents/", "/api/v1/approvals")) else token_a
        # A real agent in the path, so examples reach the rules and not only the 404.
        known = {"agent_id": str(agent.pk)} if "{agent_id}" in path else {"external_id": "worker-1"}
        strategy = operation.as_strategy(
            generation_mode=mode,
            headers={"Authorization": f"Bearer {token}"},
            path_parameters=known if "{" in path and mode is GenerationMode.POSITIVE else None,
        )

        _fuzz(strategy, asgi_server.url, seen.setdefault(path, set()))
    # Every route answered something, and the run reached past authentication.
    assert len(seen) >= 10
    assert any(code not in (401, 403) for codes in seen.values() for code in codes)
    # The events query read with token_a (its scopes: ingest and read): an example got a page.
    if mode is GenerationMode.POSITIVE:
        assert 200 in seen["/api/v1/events"], seen["/api/v1/events"]
