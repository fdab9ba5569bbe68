"""``Decision``: what ``agent.request_approval`` returns, read from the console's answer to
the request, the agent socket's ``approval`` frame or a heartbeat answer's ``decisions``
(all three carry the same fields)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

PENDING, EXPIRED = "pending", "expired"
UNREACHABLE = "timeout (console unreachable)"
UNKNOWN = "timeout (request unknown to the console)"


@dataclass(frozen=True)
class Decision:
    """A person's answer to an approval request, or its timeout's.

    ``approved`` is what the agent must do: True to go ahead. ``state`` is ``approved``,
    ``rejected`` or ``expired`` (no one decided in time: ``approved`` is then what
    ``on_timeout`` said); ``decided_by`` names the person, or says which timeout decided.
    """

    approved: bool
    decided_by: str | None
    comment: str
    decided_at: datetime | None
    state: str
    approval_id: str
    key: str = ""


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def said(message: dict[str, Any]) -> Decision | None:
    """The decision a console's message tells, or None while the request is pending."""
    state = str(message.get("state") or PENDING)
    if state == PENDING or message.get("approved") is None:
        return None
    return Decision(
        approved=bool(message["approved"]),
        decided_by=message.get("decided_by"),
        comment=str(message.get("comment") or ""),
        decided_at=_when(message.get("decided_at")),
        state=state,
        approval_id=str(message.get("approval_id") or ""),
        key=str(message.get("key") or ""),
    )


def by_timeout(approval_id: str, key: str, on_timeout: str, why: str) -> Decision:
    """The decision the SDK takes itself when the console cannot say one in time: what
    ``on_timeout`` says, as the console decides a request no one answered in time (a
    person can no longer decide it there)."""
    approved = on_timeout == "approve"
    return Decision(
        approved=approved,
        decided_by=why,
        comment=f"No decision reached the agent in time: {'approved' if approved else 'rejected'} by on_timeout.",
        decided_at=datetime.now(UTC),
        state=EXPIRED,
        approval_id=approval_id,
        key=key,
    )
