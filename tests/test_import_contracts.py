"""The import contracts (pyproject.toml, ``[tool.importlinter]``) that ``make lint`` checks
hold for the tree, and each one fails when an import breaks it: a copy of the packages
gets one forbidden import at a time and ``lint-imports`` must refuse it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "l10console",
    "dashboard",
    "ingest",
    "alerts",
    "costs",
    "approvals",
    "control",
    "members",
    "fleet",
    "events",
    "audit",
    "realtime",
    "tenancy",
    "core",
)
LINT = Path(sys.executable).parent / "lint-imports"


def lint(where: Path) -> subprocess.CompletedProcess[str]:
    # The copy's packages come first on the path, so the copy is what is analysed.
    env = {**os.environ, "PYTHONPATH": str(where)}
    return subprocess.run(
        [str(LINT), "--no-cache", "--no-logo", str(where / "pyproject.toml")],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the console's packages, the SDK and the contracts."""
    copy = tmp_path_factory.mktemp("tree")
    ignore = shutil.ignore_patterns("__pycache__", "migrations")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, copy / package, ignore=ignore)
    shutil.copytree(ROOT / "sdk" / "l10_agent", copy / "l10_agent", ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def test_the_tree_keeps_every_contract(tree):
    result = lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    "module, line, broken",
    [
        ("core/probe.py", "import fleet.models", "core imports no app"),
        ("fleet/probe.py", "from dashboard import views", "Layers"),
        ("realtime/probe.py", "from fleet import selectors", "Layers"),
        ("events/probe.py", "import audit.services", "Layers"),
        ("events/probe.py", "from control import services", "events and audit are below control"),
        ("members/probe.py", "from control import services", "Layers"),
        ("tenancy/probe.py", "from members import services", "Layers"),
        ("fleet/probe.py", "import l10console.services", "Layers"),
        ("l10_agent/probe.py", "import django", "the SDK imports nothing"),
        ("l10_agent/probe.py", "from core import errors", "the SDK imports nothing"),
        ("fleet/sql.py", "import fleet.selectors", "no import cycles"),
    ],
)
def test_each_contract_fails_on_an_import_that_breaks_it(tree, module, line, broken):
    path = tree / module
    before = path.read_text() if path.exists() else None
    path.write_text((before or "") + f"\n{line}\n")
    try:
        result = lint(tree)
    finally:
        if before is None:
            path.unlink()
        else:
            path.write_text(before)
    assert result.returncode != 0, f"{module}: {line!r} was let through:\n{result.stdout}"
    assert broken in result.stdout
    assert "BROKEN" in result.stdout
