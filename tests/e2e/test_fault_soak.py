"""The short fault soak (bench/fault_soak.py): the example workflow under faults on every
endpoint completes, pays nothing twice and loses no result."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_the_example_workflow_under_faults_everywhere(tmp_path: Path, random_seed: int) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "bench/fault_soak.py",
            *("--runs", "2", "--size", "34", "--seed", str(random_seed)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    print(done.stdout)
    figures = json.loads(done.stdout.split("FIGURES ", 1)[1])
    assert figures["completed"] == figures["runs"] == 2, done.stdout
    assert figures["duplicates"] == 0
    assert figures["lost"] == 0
    assert figures["lines"] == figures["requests"] == 2 * 34 * 3
    assert sum(figures["faulted_calls"].values()) > 0  # faults were injected
    assert done.returncode == 0
