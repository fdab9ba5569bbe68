"""A simulated fleet: SDK agents that work, report and obey a running console.

Everything goes over HTTP and the agent socket, exactly as real agents do; nothing here
touches the database. Each agent has a persona that shapes its metrics (steady, bursty,
memory-hungry, flaky) and runs tasks through ``agent.task()``, so pauses, stops and
quotas from the console take effect. Now and then an agent has an error burst, a CPU
spike, or crashes (stops without a goodbye) and comes back a little later.
"""

from __future__ import annotations

import logging
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from l10_agent import Agent, AgentStopped, QuotaExceeded

log = logging.getLogger(__name__)

# Model names and rough prices per persona; the usage they produce feeds cost tracking.
MODELS = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "claude-haiku-4", "gemini-2.5-pro", "llama-3.3-70b"]
ROLES = [
    ("search", "crawler"),
    ("search", "ranker"),
    ("support", "triage"),
    ("support", "summarizer"),
    ("ads", "bidder"),
    ("research", "planner"),
]
REGIONS = ["eu-west-1", "us-east-1", "ap-south-1"]
PERSONAS = ["steady", "steady", "bursty", "hungry", "flaky"]


def read_tokens(path: Path) -> list[tuple[str, str]]:
    """Lines of ``<tenant slug> <token>`` (as ``seed_demo --token-file`` writes them)."""
    pairs = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].startswith("l10_"):
            pairs.append((parts[0], parts[1]))
    return pairs


@dataclass
class SimulatedAgent:
    url: str
    token: str
    external_id: str
    labels: dict[str, str]
    persona: str
    stop: threading.Event
    rng: random.Random
    crash_rate: float = 0.002
    task_seconds: tuple[float, float] = (2.0, 8.0)
    heartbeat_interval: float | None = None
    agent: Agent | None = None
    tasks_done: int = 0
    crashes: int = 0
    _cpu: float = field(default=20.0)

    def connect(self) -> Agent:
        self.agent = Agent(
            self.url,
            self.token,
            self.external_id,
            name=self.external_id.replace("-", " "),
            labels=self.labels,
            heartbeat_interval=self.heartbeat_interval,
        )
        return self.agent

    def run(self) -> None:
        """Work until told to stop; crash and come back now and then."""
        agent = self.connect()
        while not self.stop.is_set():
            if self.rng.random() < self.crash_rate:
                self._crash(agent)
                agent = self.connect()
                continue
            try:
                with agent.task(self._task_name(), timeout=1.0):
                    self._work(agent)
                self.tasks_done += 1
            except TimeoutError:  # paused: try again shortly
                continue
            except AgentStopped:
                if agent.wait_for_state("running", timeout=2.0):
                    continue
                self.stop.wait(1.0)
            except QuotaExceeded:
                self.stop.wait(5.0)

    def close(self) -> None:
        if self.agent is not None:
            self.agent.close(timeout=5)

    def _task_name(self) -> str:
        return self.labels["role"] + "." + self.rng.choice(["fetch", "plan", "answer", "index", "review"])

    def _crash(self, agent: Agent) -> None:
        self.crashes += 1
        log.info("%s crashes", self.external_id)
        agent.close(graceful=False)
        self.stop.wait(self.rng.uniform(20, 60))

    def _work(self, agent: Agent) -> None:
        rng = self.rng
        seconds = rng.uniform(*self.task_seconds)
        spike = rng.random() < (0.05 if self.persona == "bursty" else 0.01)
        burst = rng.random() < (0.08 if self.persona == "flaky" else 0.01)
        # CPU: a random walk around the persona's level, with occasional spikes.
        base = {"steady": 25.0, "bursty": 40.0, "hungry": 55.0, "flaky": 30.0}[self.persona]
        self._cpu = max(1.0, min(99.0, self._cpu + rng.gauss((base - self._cpu) * 0.2, 6.0)))
        cpu = min(100.0, self._cpu + (rng.uniform(30, 50) if spike else 0.0))
        memory = {"steady": 600.0, "bursty": 900.0, "hungry": 2400.0, "flaky": 700.0}[self.persona]
        calls = rng.randint(1, 2)
        errors = rng.randint(3, 10) if burst else (1 if rng.random() < 0.03 else 0)
        tokens = 0
        for _ in range(calls):
            model = rng.choice(MODELS[:4] if self.persona != "hungry" else MODELS)
            input_tokens, output_tokens = rng.randint(150, 2500), rng.randint(40, 700)
            tokens += input_tokens + output_tokens
            agent.record_usage(model=model, input_tokens=input_tokens, output_tokens=output_tokens)
        agent.record_metrics(
            cpu_percent=round(cpu, 1),
            memory_mb=round(memory * rng.uniform(0.9, 1.15), 1),
            latency_p95_ms=round(rng.lognormvariate(5.5, 0.4) * (3 if burst else 1), 1),
            tokens=tokens,
            requests=calls,
            errors=errors,
        )
        if burst:
            agent.record_event("agent.error_burst", severity="error", message=f"{errors} upstream errors in one task")
        elif spike:
            agent.record_event("agent.cpu_spike", severity="warning", message=f"CPU at {cpu:.0f}%")
        self.stop.wait(seconds)


@dataclass
class Fleet:
    agents: list[SimulatedAgent]
    stop: threading.Event
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        # Hundreds of mostly-sleeping worker threads: keep their stacks small.
        previous = threading.stack_size(512 * 1024)
        try:
            for sim in self.agents:
                thread = threading.Thread(target=sim.run, name=f"sim-{sim.external_id}", daemon=True)
                thread.start()
                self.threads.append(thread)
        finally:
            threading.stack_size(previous)

    def shutdown(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=5)
        with ThreadPoolExecutor(max_workers=32) as pool:
            list(pool.map(lambda sim: sim.close(), self.agents))


def build_fleet(
    url: str,
    tokens: list[tuple[str, str]],
    agents_per_tenant: int,
    *,
    seed: int | None = None,
    crash_rate: float = 0.002,
    task_seconds: tuple[float, float] = (2.0, 8.0),
    heartbeat_interval: float | None = None,
) -> Fleet:
    stop = threading.Event()
    rng = random.Random(seed)  # noqa: S311 - simulation, not security
    agents = []
    for slug, token in tokens:
        for i in range(agents_per_tenant):
            team, role = ROLES[i % len(ROLES)]
            external_id = f"{role}-{i + 1:03d}"
            labels = {"team": team, "role": role, "env": "prod" if i % 3 else "staging", "region": REGIONS[i % 3]}
            agents.append(
                SimulatedAgent(
                    url=url,
                    token=token,
                    external_id=external_id,
                    labels=labels,
                    persona=PERSONAS[rng.randrange(len(PERSONAS))],
                    stop=stop,
                    rng=random.Random(rng.random()),  # noqa: S311
                    crash_rate=crash_rate,
                    task_seconds=task_seconds,
                    heartbeat_interval=heartbeat_interval,
                )
            )
        log.info("tenant %s: %d simulated agents", slug, agents_per_tenant)
    return Fleet(agents=agents, stop=stop)
