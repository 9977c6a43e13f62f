"""bench/triggers.py runs end to end on a tiny input. Nothing here is timed: the figures are
the bench's to print, and only their presence and the calls behind them are checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_the_triggers_bench_runs_on_a_tiny_input() -> None:
    command = [sys.executable, str(ROOT / "bench" / "triggers.py")]
    command += ["--cases", "startup,shared:20,retrieve:20", "--seconds", "1", "--warmup", "1"]
    command += ["--startup-runs", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    figures = {item["case"]: item for item in lines}
    assert set(figures) == {"startup", "shared:20", "retrieve:20"}
    assert figures["startup"]["import_s"]["median"] > 0
    shared, retrieve = figures["shared:20"], figures["retrieve:20"]
    for case in (shared, retrieve):
        assert case["polls"] > 0
        assert {"cpu_ms_per_poll", "lag_p99_ms", "rss_mib", "rate"} <= set(case)
    # The shared poller lists; the old way retrieves each batch at each poll.
    assert shared["server_calls"]["list"] >= 1
    assert retrieve["server_calls"]["list"] == 0
    assert retrieve["server_calls"]["retrieve"] >= 1
    assert "shared:20:" in done.stdout  # the readable line too
