"""Every benchmark still runs: ``bench/run.py --small NAME`` for each ``bench/bench_*.py``,
the same code paths at a size that takes seconds (``bench.common.sized``), against the
machine's PostgreSQL and Redis in stores of their own. No targets are judged here; speed
belongs to ``make bench``. A bench whose seed, server or checks no longer fit the console
fails this test, not next month's ``make bench``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NAMES = sorted(p.stem for p in (ROOT / "bench").glob("bench_*.py"))

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def test_every_bench_is_run_here():
    assert len(NAMES) >= 6


def run_small(*args: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """``bench/run.py --small ARGS``: it ran, failed no bench and judged no target."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--small", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=580,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    assert "FAILED benchmarks" not in out and "MISSED" not in out, out[-3000:]
    return done, out


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", NAMES)
def test_the_bench_runs_at_its_small_size(name):
    done, out = run_small(name)
    assert "small size (no targets)" in out
    # It measured something: at least one row of the table has a value.
    assert re.search(r"^\S.*\s\d[\d,.]*\s(ms|µs|s|MB|samples/s|%|failures)\s", done.stdout, re.M), out[-3000:]


@pytest.mark.timeout(600)
def test_a_growth_run_runs_each_small_size_and_tables_them_side_by_side():
    # The growth mode is one loop for every bench with a GROWTH; the cheapest one shows it
    # (each bench's own code runs at its small size above).
    done, out = run_small("--growth", "alerts")
    assert "--- bench_alerts at 200 agents ---" in done.stdout and "at 400 agents ---" in done.stdout
    table = done.stdout.split("Growth of bench_alerts", 1)[-1]
    figure = r"^alert evaluation: \d+ rules, one steady cycle \(median\)"
    assert re.search(figure + r"\s+[\d.]+ ms\s+[\d.]+ ms\s+[\d.]+×", table, re.M), out[-3000:]
