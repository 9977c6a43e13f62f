"""bench/eval_scale.py runs both nights on a tiny input (nothing is timed): night 2 is answered
by the cache, published and compared with night 1, and each phase reports its figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"

pytestmark = pytest.mark.slow


def test_two_nights_of_a_tiny_eval() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "eval_scale.py"), "--requests", "200"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = json.loads(done.stdout.strip().splitlines()[-1])
    assert row["night1_lines"] == row["night2_lines"] == 600
    assert row["night1_stored_in_cache"] == 600
    assert row["night2_create_calls"] == 0 and row["night2_cache_hits"] == 600
    assert row["night2_compared"] == 600 and row["night2_regressions"] == 0
    for night in (1, 2):
        for phase in ("fetch", "evaluate"):
            assert row[f"night{night}_{phase}_lines_per_s"] > 0
            assert row[f"night{night}_{phase}_cpu_s"] >= 0
            assert 0 < row[f"night{night}_{phase}_peak_mib"] < 1024
