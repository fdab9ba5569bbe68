"""A control dialog the server refused, kept for one page load: the agent's page opens it
again with what was typed and why, instead of closing it and losing the input."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, QueryDict

SESSION_KEY = "l10_reopen_dialog"
FIELDS = ("reason", "quota_type", "period", "new_limit", "minutes", "mode")


def remember_refused(request: HttpRequest, agent_id: str, action: str, error: str, post: QueryDict) -> None:
    request.session[SESSION_KEY] = {
        "agent": agent_id,
        "action": action,
        "error": error,
        "values": {name: post.get(name, "")[:500] for name in FIELDS},
    }


def take_refused(request: HttpRequest, agent_id: str) -> dict[str, Any] | None:
    """The refused dialog of this agent's page, once; None if there is none."""
    kept = request.session.get(SESSION_KEY)
    if not isinstance(kept, dict) or kept.get("agent") != agent_id:
        return None
    del request.session[SESSION_KEY]
    return kept
