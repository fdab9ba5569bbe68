"""In Chromium: an operator pauses agents picked in the list, after a preview; a Celery
worker runs the batch while the page shows its progress; then the batch is undone."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from audit.models import AuditEntry
from control.models import Batch
from fleet.models import Agent, DesiredState
from tests.conftest import LiveServer
from tests.e2e.test_journey import sign_in
from tests.factories import PASSWORD, AgentFactory

pytestmark = [pytest.mark.browser, pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_bulk_pause_with_preview_progress_and_undo(
    page: Page, asgi_server: LiveServer, celery_worker_process, operator_a: User, tenant_a
):
    for n in range(4):
        AgentFactory.create(tenant=tenant_a, external_id=f"crawler-{n}", name=f"Crawler {n}")
    Agent.objects.filter(external_id="crawler-3").update(desired_state=DesiredState.PAUSED)

    page.goto(f"{asgi_server.url}/login/")
    sign_in(page, "oscar", PASSWORD)
    page.goto(f"{asgi_server.url}/t/acme/agents/")
    for n in range(4):
        page.get_by_label(f"Select Crawler {n}").check()
    page.get_by_role("button", name="Pause selected…").click()

    expect(page.get_by_test_id("preview-summary")).to_contain_text("3 will be paused; 1 already is.")
    assert Agent.objects.filter(desired_state=DesiredState.PAUSED).count() == 1  # a preview changes nothing
    page.get_by_label("Reason (optional)").fill("rolling upgrade")
    page.get_by_role("button", name="Pause 3 agents").click()

    expect(page.get_by_test_id("batch-status")).to_contain_text("Done: 4 of 4", timeout=20_000)
    expect(page.get_by_test_id("batch-status")).to_contain_text("3 success")
    assert Agent.objects.filter(desired_state=DesiredState.PAUSED).count() == 4
    batch = Batch.objects.get(undo_of__isnull=True)
    assert AuditEntry.objects.filter(batch_id=batch.pk, outcome="success").count() == 3
    assert set(AuditEntry.objects.filter(batch_id=batch.pk).values_list("reason", flat=True)) == {"rolling upgrade"}

    # Found again later: from the agent list, through the batch history.
    page.goto(f"{asgi_server.url}/t/acme/agents/")
    page.get_by_role("link", name="Batches").click()
    row = page.get_by_test_id("batches").locator(f"#batch-{batch.pk}")
    expect(row).to_contain_text("oscar")
    expect(row).to_contain_text("3 success · 1 noop")
    expect(row).to_contain_text("Done")
    row.get_by_role("link", name="Open · undo…").click()
    page.get_by_test_id("undo-batch").click()
    # Asked in the console's own dialog, not the browser's.
    confirm = page.get_by_role("dialog", name=re.compile(r"^Undo this batch\?"))
    confirm.get_by_role("button", name="Undo the batch").click()
    expect(page.get_by_test_id("batch-status")).to_contain_text("Done: 3 of 3", timeout=20_000)
    states = dict(Agent.objects.values_list("external_id", "desired_state"))
    assert states == {"crawler-0": "running", "crawler-1": "running", "crawler-2": "running", "crawler-3": "paused"}
