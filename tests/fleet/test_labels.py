"""The label selector's grammar (fleet/labels.py): what it takes, what it refuses, and
that no text can make it raise anything but BadSelector."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.labels import BadSelector, Requirement, parse_selector


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        ("  ", ()),
        ("team=search", (Requirement("team", "=", ("search",)),)),
        ("team==search", (Requirement("team", "=", ("search",)),)),
        ("team!=search", (Requirement("team", "!=", ("search",)),)),
        ("zone in (eu-1, eu-2)", (Requirement("zone", "in", ("eu-1", "eu-2")),)),
        ("zone notin (eu-1)", (Requirement("zone", "notin", ("eu-1",)),)),
        ("in in (a)", (Requirement("in", "in", ("a",)),)),
        (
            "app.kubernetes.io/name=x, tier=in",
            (Requirement("app.kubernetes.io/name", "=", ("x",)), Requirement("tier", "=", ("in",))),
        ),
        ("team=sé@rch", (Requirement("team", "=", ("sé@rch",)),)),
    ],
)
def test_what_the_grammar_takes(text, expected):
    assert parse_selector(text) == expected


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("team", "needs an operator"),
        ("team=", "needs a value"),
        ("team!=", "needs a value"),
        ("=x", "not a label name"),
        ("te am=x", "needs an operator"),
        ("team in (a", "closed by"),
        ("team in (a b)", "closed by"),
        ("team in a", "parentheses"),
        ("team=a=b", "Separate requirements"),
        ("team=a team=b", "Separate requirements"),
        ("team=(a)", "needs a value"),
        ("team<x", "not a label name"),
        ("k" * 64 + "=x", "not a label name"),
        ("team=" + "x" * 201, "at most 200"),
        ("team=a\x00", "NUL"),
        ("team=a\n", "control character"),
        (",".join(f"k{n}=v" for n in range(21)), "at most 20"),
        ("k in (" + ",".join("v" * 1 for _ in range(51)) + ")", "at most 50"),
        ("x" * 2001, "at most 2000"),
    ],
)
def test_what_the_grammar_refuses_and_why(text, words):
    with pytest.raises(BadSelector, match=words):
        parse_selector(text)


def test_a_requirement_reads_back_as_it_parses():
    text = "team=search,env!=dev,zone in (eu-1,eu-2),tier notin (gold)"
    parsed = parse_selector(text)
    assert parse_selector(",".join(str(r) for r in parsed)) == parsed


@given(st.text(max_size=300))
def test_no_text_makes_the_parser_raise_anything_else(text):
    try:
        requirements = parse_selector(text)
    except BadSelector:
        return
    for req in requirements:
        assert req.op in ("=", "!=", "in", "notin")
        assert req.values and all(v and "\x00" not in v for v in req.values)


@given(st.lists(st.sampled_from(["team", "=", "!=", "in", "notin", "(", ")", ",", "a", " ", "b__gt"]), max_size=12))
def test_no_arrangement_of_its_own_tokens_makes_it_raise_anything_else(parts):
    with contextlib.suppress(BadSelector):
        parse_selector("".join(parts))
