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


class ApprovalRefused(ValueError):
    """The console refused an approval request as it was asked (``code`` E10350 to E10353,
    or the API's own for a body it cannot read): asking again the same way cannot help."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.code, self.message, self.status = code, message, status


@dataclass(frozen=True)
class Change:
    """What changed, passed to ``on_change`` callbacks."""

    desired_state: str
    previous_state: str
    version: int
    quotas: dict[str, dict[str, int]]
