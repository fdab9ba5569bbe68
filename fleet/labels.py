"""Label selectors: a small grammar, parsed before anything reaches the database.

::

    selector    := requirement ( "," requirement )*
    requirement := key ( "=" | "==" | "!=" ) value
                 | key ( "in" | "notin" ) "(" value ( "," value )* ")"
    key         := 1 to 63 of  A-Z a-z 0-9 . _ / -
    value       := 1 to 200 characters, none of them a space, "," "(" ")" "=" "!"
                   or a control character

``team=search,env!=dev,zone in (eu-1,eu-2)``. As in Kubernetes, ``!=`` and ``notin``
also match agents that lack the key. A key is only ever a JSON key to look up
(``with_selector``), never part of an ORM lookup, so no lookup is reachable from input.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from django.db import connections
from django.db.models import Q, QuerySet
from django.db.models.fields.json import KeyTransform

from core.inputs import text_problem
from fleet.models import Agent

KEY = re.compile(r"[A-Za-z0-9._/-]{1,63}")
MAX_VALUE = 200
MAX_REQUIREMENTS = 20
MAX_VALUES = 50
MAX_SELECTOR = 2000
_TOKEN = re.compile(r"\s*(?:(?P<op>!=|==|=|\(|\)|,)|(?P<word>[^\s,()=!]+))")

Op = Literal["=", "!=", "in", "notin"]


class BadSelector(ValueError):
    """The selector does not follow the grammar; the message says where."""


@dataclass(frozen=True)
class Requirement:
    key: str
    op: Op
    values: tuple[str, ...]

    def __str__(self) -> str:
        if self.op in ("in", "notin"):
            return f"{self.key} {self.op} ({','.join(self.values)})"
        return f"{self.key}{self.op}{self.values[0]}"


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None:
            bad = text[pos:].lstrip()[:1]
            raise BadSelector(f"“{bad}” cannot appear in a selector; write key=value, key!=value or key in (a,b).")
        kind = "op" if match.group("op") else "word"
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def _value(token: tuple[str, str] | None, key: str) -> str:
    if token is None or token[0] != "word":
        raise BadSelector(f"“{key}” needs a value, e.g. {key}=search.")
    if len(token[1]) > MAX_VALUE:
        raise BadSelector(f"A value may be at most {MAX_VALUE} characters.")
    return token[1]


def parse_selector(text: str) -> tuple[Requirement, ...]:
    """The requirements of a selector (none for an empty one); BadSelector with the reason."""
    if len(text) > MAX_SELECTOR:
        raise BadSelector(f"A selector may be at most {MAX_SELECTOR} characters.")
    problem = text_problem(text)
    if problem:
        raise BadSelector(f"The selector {problem}.")
    tokens = _tokens(text)
    requirements: list[Requirement] = []
    n = 0

    def take() -> tuple[str, str] | None:
        nonlocal n
        token = tokens[n] if n < len(tokens) else None
        n += 1
        return token

    while n < len(tokens):
        token = take()
        if token == ("op", ","):
            continue
        if token is None or token[0] != "word" or not KEY.fullmatch(token[1]):
            shown = token[1] if token else ""
            raise BadSelector(f"“{shown}” is not a label name; use 1 to 63 letters, digits and . _ / -.")
        key = token[1]
        op = take()
        if op in (("op", "="), ("op", "==")):
            requirements.append(Requirement(key, "=", (_value(take(), key),)))
        elif op == ("op", "!="):
            requirements.append(Requirement(key, "!=", (_value(take(), key),)))
        elif op is not None and op in (("word", "in"), ("word", "notin")):
            if take() != ("op", "("):
                raise BadSelector(f"Write {key} {op[1]} (a,b): the values go in parentheses.")
            values: list[str] = []
            while True:
                values.append(_value(take(), key))
                closing = take()
                if closing == ("op", ")"):
                    break
                if closing != ("op", ","):
                    raise BadSelector(f"The values of {key} {op[1]} (…) are separated by commas and closed by “)”.")
            if len(values) > MAX_VALUES:
                raise BadSelector(f"A set may hold at most {MAX_VALUES} values.")
            requirements.append(Requirement(key, "in" if op[1] == "in" else "notin", tuple(values)))
        else:
            raise BadSelector(f"“{key}” needs an operator: {key}=value, {key}!=value or {key} in (a,b).")
        after = take()
        if after not in (None, ("op", ",")):
            raise BadSelector(f"Separate requirements with commas (after “{requirements[-1]}”).")
        if len(requirements) > MAX_REQUIREMENTS:
            raise BadSelector(f"A selector may hold at most {MAX_REQUIREMENTS} requirements.")
    return tuple(requirements)


def selector_q(requirements: Iterable[Requirement]) -> Q:
    """Every requirement as JSON containment (PostgreSQL), in one condition: a filter, or a
    boolean column (``ExpressionWrapper``) that says for each agent whether it matches."""
    out = Q()
    for req in requirements:
        has = functools.reduce(operator.or_, (Q(labels__contains={req.key: value}) for value in req.values))
        out &= has if req.op in ("=", "in") else ~has
    return out


def with_selector(
    agents: QuerySet[Agent], requirements: Iterable[Requirement], *, containment: bool | None = None
) -> QuerySet[Agent]:
    """The agents that meet every requirement. Each key is only ever a JSON key, passed as
    a parameter of the query, never an ORM lookup.

    On PostgreSQL a requirement is JSON containment, ``labels @> '{"team": "search"}'``
    (``in``: one containment per value, OR-ed), which the GIN index ``agent_labels_gin``
    serves and whose selectivity the planner estimates from the labels column's statistics
    (docs/performance.md, "Tiles and filters at 50,000 agents"). ``!=`` and ``notin`` are
    its negation, so an agent without the key matches them. Elsewhere (SQLite, which has no
    JSON containment in Django) the key is looked up (``JSON_EXTRACT``), with the same
    meaning: labels are an object of strings (fleet.services.agent_register).
    ``containment`` chooses the form (by default: containment on PostgreSQL only)."""
    if containment is None:
        containment = connections[agents.db].vendor == "postgresql"
    if containment:
        return agents.filter(selector_q(requirements))
    for n, req in enumerate(requirements):
        name = f"selector_label_{n}"
        agents = agents.alias(**{name: KeyTransform(req.key, "labels")})
        if req.op == "=":
            agents = agents.filter(**{name: req.values[0]})
        elif req.op == "in":
            agents = agents.filter(**{f"{name}__in": req.values})
        elif req.op == "!=":
            agents = agents.filter(Q(**{f"{name}__isnull": True}) | ~Q(**{name: req.values[0]}))
        else:
            agents = agents.filter(Q(**{f"{name}__isnull": True}) | ~Q(**{f"{name}__in": req.values}))
    return agents
