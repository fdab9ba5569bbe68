"""Every plain statement has a parity test (tests/parity.py), and each test names a real
statement."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
from pathlib import Path

import core.sql

APPS = (
    "tenancy",
    "realtime",
    "events",
    "audit",
    "fleet",
    "control",
    "members",
    "costs",
    "ingest",
    "alerts",
    "dashboard",
)
TESTS = Path(__file__).resolve().parent


def _statements() -> set[str]:
    for app in APPS:
        if importlib.util.find_spec(f"{app}.sql") is not None:
            importlib.import_module(f"{app}.sql")
    return set(core.sql.STATEMENTS)


def _parity_tests() -> dict[str, list[str]]:
    covered: dict[str, list[str]] = {}
    for module_info in pkgutil.walk_packages([str(TESTS)], "tests."):
        if module_info.name.rsplit(".", 1)[-1] != "test_sql":
            continue
        module = importlib.import_module(module_info.name)
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            for mark in getattr(fn, "pytestmark", []):
                if mark.name == "parity":
                    covered.setdefault(mark.args[0], []).append(f"{module_info.name}.{name}")
    return covered


def test_every_plain_statement_has_a_parity_test():
    statements, covered = _statements(), _parity_tests()
    assert len(statements) >= 12, f"found only {sorted(statements)}"
    missing = sorted(statements - covered.keys())
    assert not missing, f"plain statements without a parity test: {missing}"


def test_every_parity_test_names_a_statement():
    statements, covered = _statements(), _parity_tests()
    unknown = {name: tests for name, tests in covered.items() if name not in statements}
    assert not unknown, f"parity tests of no statement: {unknown}"
