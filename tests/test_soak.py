"""The soak still runs: ``bench/soak.py --small`` starts the console, a Celery worker and
beat, sockets and reporting agents as ``make soak`` does, at a size that takes seconds
(50 sockets, 50 agents, 20 s), in stores of its own, and judges the same checks but the
RSS drift. A soak whose seed, processes or checks no longer fit the console fails this
test, not next month's ``make soak``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.mark.timeout(300)
def test_the_soak_runs_at_its_small_size_and_passes():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--small"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    assert "L10 soak (small)" in done.stdout and "All checks passed." in done.stdout, out[-3000:]
    assert "FAILED" not in done.stdout and "MISSED" not in done.stdout, out[-3000:]

    def value(figure: str) -> float:
        found = re.search(rf"^{re.escape(figure)}\s+(-?[\d,.]+) ", done.stdout, re.M)
        assert found, f"no row {figure!r}:\n{done.stdout[-3000:]}"
        return float(found.group(1).replace(",", ""))

    # It ran what it says: every socket open to the end, agents reporting, the periodic
    # tasks run by the worker, and Redis's keys read.
    assert value("soak: sockets open, 20 s") == 50
    assert value("soak: ingest requests per second") > 0
    assert value("soak: agents heartbeating at the end") == 50
    assert value("soak: alert evaluations run") >= 1
    assert value("soak: cost rollups run") >= 1
    assert value("soak: Redis keys at 8 s") > 0
