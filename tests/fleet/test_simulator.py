"""The simulated fleet, run as `manage.py simulate_fleet` against a live console."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from events.models import Event
from fleet import services
from fleet.models import Agent, DesiredState, ObservedState
from fleet.simulator import read_tokens
from tests.conftest import LiveServer, wait_for

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def simulator(asgi_server: LiveServer, token_a: str, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("L10_", "DJANGO_"))}
    env.update({"L10_DEBUG": "1", "L10_SQLITE_PATH": str(tmp_path / "unused.sqlite3")})
    command = [sys.executable, "manage.py", "simulate_fleet", "--url", asgi_server.url, "--token", token_a]
    command += ["--agents", "3", "--seed", "7", "--crash-rate", "0", "--task-seconds", "0.05", "0.15"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield process
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)


def started(external_id: str) -> int:
    return Event.objects.filter(type="task.started", agent__external_id=external_id).count()


def test_simulated_agents_report_in_and_obey_a_pause(simulator, tenant_a):
    wait_for(
        lambda: Agent.objects.filter(tenant=tenant_a, observed_state=ObservedState.RUNNING).count() == 3,
        timeout=20,
        what="three simulated agents running",
    )
    wait_for(lambda: started("crawler-001") >= 2, timeout=20, what="crawler-001 to work")
    crawler = Agent.objects.get(tenant=tenant_a, external_id="crawler-001")
    assert crawler.labels["team"] == "search"

    services.agent_desired_state_set(agent_id=crawler.pk, state=DesiredState.PAUSED, actor=None)
    wait_for(
        lambda: Agent.objects.get(pk=crawler.pk).observed_state == ObservedState.PAUSED,
        timeout=5,
        what="the simulated agent to confirm the pause",
    )
    # Events are flushed every second: let what was recorded before the pause arrive,
    # then the count must stand still while the other agents keep working.
    wait_for(lambda: started("ranker-002") >= 1, timeout=10, what="ranker-002 to work")
    paused_at = started("crawler-001")
    others_at = started("ranker-002")
    wait_for(lambda: started("ranker-002") >= others_at + 15, timeout=20, what="the other agents to keep working")
    assert started("crawler-001") <= paused_at + 1  # at most the task in hand when the pause arrived

    services.agent_desired_state_set(agent_id=crawler.pk, state=DesiredState.RUNNING, actor=None)
    wait_for(lambda: started("crawler-001") >= paused_at + 3, timeout=10, what="work to resume")


def test_read_tokens_takes_the_seed_files_lines(tmp_path: Path):
    path = tmp_path / "tokens.txt"
    path.write_text("acme l10_abcdef12_secret\n\n# comment\nglobex l10_12345678_other\nbroken\n")
    assert read_tokens(path) == [("acme", "l10_abcdef12_secret"), ("globex", "l10_12345678_other")]


def test_the_command_refuses_more_tenants_than_tokens(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("L10_", "DJANGO_"))}
    env.update({"L10_DEBUG": "1", "L10_SQLITE_PATH": str(tmp_path / "unused.sqlite3")})
    result = subprocess.run(
        [sys.executable, "manage.py", "simulate_fleet", "--token", "l10_abcdef12_x", "--tenants", "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "more tenants than the 1 token(s)" in result.stderr
