"""What the SDK raises to the agent's code, and what it tells ``on_change`` callbacks."""

from __future__ import annotations

from dataclasses import dataclass


class AgentStopped(RuntimeError):
    """The console stopped this agent (or it was closed): start no new work."""


class AgentPaused(RuntimeError):
    """The console paused this agent with mode "now": the task in hand stops at this checkpoint."""


class QuotaExceeded(RuntimeError):
    """A hard quota is used up: start no new work until the period rolls over or it is raised."""

    def __init__(self, kind: str, period: str, used: int, limit: int) -> None:
        super().__init__(f"{kind} quota per {period} is used up: {used} of {limit}")
        self.kind, self.period, self.used, self.limit = kind, period, used, limit


@dataclass(frozen=True)
class Change:
    """What changed, passed to ``on_change`` callbacks."""

    desired_state: str
    previous_state: str
    version: int
    quotas: dict[str, dict[str, int]]
