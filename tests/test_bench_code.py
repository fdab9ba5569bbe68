"""The app code the benchmarks run (``*_CODE`` scripts for ``manage.py shell``) names only
what the app has: every import resolves, and every attribute read off an imported module
exists. A renamed service breaks this test, not next month's ``make bench``."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def scripts() -> list[tuple[str, str]]:
    found = []
    for path in sorted(BENCH.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                for target in node.targets:
                    if (
                        isinstance(target, ast.Name)
                        and target.id.endswith("_CODE")
                        and isinstance(node.value.value, str)
                    ):
                        found.append((f"{path.stem}.{target.id}", node.value.value))
    return found


def test_the_benchmarks_have_app_scripts():
    assert len(scripts()) >= 5


@pytest.mark.parametrize(("name", "code"), scripts(), ids=[name for name, _ in scripts()])
def test_each_script_names_what_the_app_has(name, code):
    tree = ast.parse(code)
    modules: dict[str, object] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            module = importlib.import_module(node.module)
            for alias in node.names:
                value = getattr(module, alias.name, None)
                if value is None:  # a submodule: from fleet import services
                    value = importlib.import_module(f"{node.module}.{alias.name}")
                modules[alias.asname or alias.name] = value
        elif isinstance(node, ast.Import):
            for alias in node.names:
                modules[alias.asname or alias.name] = importlib.import_module(alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            owner = modules[node.value.id]
            assert hasattr(owner, node.attr), f"{name}: {node.value.id}.{node.attr} does not exist"
