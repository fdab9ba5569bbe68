"""What each role may do, asked of the membership, and pages that ask it that way."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tenancy.models import Membership, Role

TEMPLATES = Path(__file__).resolve().parent.parent.parent / "templates"


@pytest.mark.parametrize(
    ("role", "pause", "stop", "manage"),
    [(Role.VIEWER, False, False, False), (Role.OPERATOR, True, False, False), (Role.ADMIN, True, True, True)],
)
def test_each_role_may_do_what_it_should(role, pause, stop, manage):
    membership = Membership(role=role)
    assert (membership.can_pause, membership.can_stop, membership.can_manage) == (pause, stop, manage)


def test_no_template_compares_role_names():
    compared = [
        f"{path.relative_to(TEMPLATES)}:{n}: {line.strip()}"
        for path in TEMPLATES.rglob("*.html")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\.role\s*(==|!=|in\b)|role_enum", line)
    ]
    assert not compared, "ask the membership (can_pause, can_stop, can_manage) instead:\n" + "\n".join(compared)
