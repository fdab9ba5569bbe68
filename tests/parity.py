"""Parity tests: every plain statement (core/sql.py) runs beside its portable twin on the
same PostgreSQL data, and the two must agree. ``@parity(statement)`` marks the test that
shows it; tests/test_sql_parity.py fails for a statement with none."""

from __future__ import annotations

from typing import Any

import pytest

from core.sql import Statement


def parity(statement: Statement[Any, Any]) -> pytest.MarkDecorator:
    return pytest.mark.parity(statement.name)
