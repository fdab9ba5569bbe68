"""How the console shows a request (docs/approvals.md, "The inbox"): its details as text,
as indented JSON, or as a before/after diff; who may decide it; whether a member may.

Everything here returns plain strings and lists: the templates escape them, so what an
agent wrote is never taken for HTML."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from approvals.models import ApprovalRequest, ApprovalVote
from tenancy.models import Membership, Role

# A diff longer than this is cut (the details are at most L10_APPROVAL_MAX_DETAILS_BYTES).
MAX_DIFF_LINES = 2000


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "add", "del", "hunk", "head" or "same": the line's CSS class, diff-<kind>
    text: str


@dataclass(frozen=True)
class Details:
    """One of ``text`` (a string), ``json`` (anything else) or ``diff`` (an object with
    "before" and "after"; the object's other keys in ``json``)."""

    text: str = ""
    json: str = ""
    diff: list[DiffLine] = field(default_factory=list)
    is_diff: bool = False
    same: bool = False  # before and after are equal
    cut: bool = False  # the diff was longer than MAX_DIFF_LINES


def _dumped(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def _lines(value: Any) -> list[str]:
    return value.splitlines() if isinstance(value, str) else _dumped(value).splitlines()


def _kind(line: str) -> str:
    if line.startswith(("+++", "---")):
        return "head"
    if line.startswith("@@"):
        return "hunk"
    return {"+": "add", "-": "del"}.get(line[:1], "same")


def details_shown(details: Any) -> Details | None:
    """``details`` as the page shows it; None when there are none."""
    if details is None or details == "" or details == {}:
        return None
    if isinstance(details, str):
        return Details(text=details)
    if isinstance(details, dict) and "before" in details and "after" in details:
        before, after = details["before"], details["after"]
        lines = list(difflib.unified_diff(_lines(before), _lines(after), "before", "after", lineterm=""))
        rest = {k: v for k, v in details.items() if k not in ("before", "after")}
        return Details(
            json=_dumped(rest) if rest else "", is_diff=True, same=not lines, cut=len(lines) > MAX_DIFF_LINES,
            diff=[DiffLine(_kind(line), line) for line in lines[:MAX_DIFF_LINES]],
        )  # fmt: skip
    return Details(json=_dumped(details))


def who_decides(request: ApprovalRequest) -> str:
    """ "an admin", or "an operator or an admin", and whether two people must approve."""
    who = "an admin" if request.needs_role == Role.ADMIN else "an operator or an admin"
    return f"{who}; two different people must approve" if request.needs_approvers > 1 else who


def may_decide(request: ApprovalRequest, membership: Membership | None) -> bool:
    """Whether ``membership``'s role is enough for this request (the service checks again)."""
    return membership is not None and membership.allows(Role(request.needs_role))


def vote_of(request: ApprovalRequest, user: AbstractBaseUser | AnonymousUser | None) -> ApprovalVote | None:
    """The approval ``user`` gave this request so far (of two), if any: from the votes
    prefetched with it."""
    if user is None or not user.is_authenticated:
        return None
    return next((v for v in request.votes.all() if v.user_id == user.pk), None)
