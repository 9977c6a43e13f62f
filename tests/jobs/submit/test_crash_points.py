"""kill -9 of the submitting process at each point of the write-ahead protocol, then a retry
in a new process: exactly one batch, holding every request. Real processes, real SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_batches.emulator.testing import RunningEmulator
from tests.jobs.submit.crash_submit import requests

ROOT = Path(__file__).resolve().parents[3]


def run(emulator: RunningEmulator, staging: Path, point: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.jobs.submit.crash_submit",
            emulator.base_url,
            emulator.api_key,
            str(staging),
            point,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("point", ["before_intent", "after_intent", "after_create"])
def test_a_retry_after_a_kill_creates_exactly_one_batch_with_every_request(
    emulator: RunningEmulator, tmp_path: Path, point: str
) -> None:
    crashed = run(emulator, tmp_path, point)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    made_before = emulator.admin.batches_created()
    assert made_before == (1 if point == "after_create" else 0)
    retried = run(emulator, tmp_path, "none")
    assert retried.returncode == 0, retried.stderr
    batch_id = retried.stdout.strip()
    assert emulator.admin.batches_created() == 1
    received = sorted(r["custom_id"] for r in emulator.admin.requests(batch_id))
    assert received == sorted(r["custom_id"] for r in requests())


def test_a_kill_at_a_random_moment_inside_a_slow_create(
    emulator: RunningEmulator, tmp_path: Path, random_seed: int
) -> None:
    import random
    import time

    moment = random.Random(random_seed).uniform(0.0, 1.4)  # somewhere inside the held create

    emulator.configure(faults={"create": {"rate_slow": 1.0, "slow_seconds": 1.5, "max_count": 1}})
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.jobs.submit.crash_submit",
            emulator.base_url,
            emulator.api_key,
            str(tmp_path),
            "none",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    emulator.wait_until(lambda: emulator.admin.create_calls() + _slow(emulator) > 0, timeout=60)
    time.sleep(moment)  # real time: the create is held by a real server, the kill is real
    proc.kill()
    proc.wait(timeout=30)
    # The held call may still be handled from the body the server received, or dropped with
    # its connection: either way, once it has settled, the retry must end with one batch.
    try:
        emulator.wait_until(lambda: emulator.admin.create_calls() == 1, timeout=4)
    except TimeoutError:
        assert emulator.admin.batches_created() == 0
    retried = run(emulator, tmp_path, "none")
    assert retried.returncode == 0, retried.stderr
    assert emulator.admin.batches_created() == 1
    received = sorted(r["custom_id"] for r in emulator.admin.requests(retried.stdout.strip()))
    assert received == sorted(r["custom_id"] for r in requests())


def _slow(emulator: RunningEmulator) -> int:
    create = emulator.admin.stats()["endpoints"].get("create", {})
    return int(create.get("faults", {}).get("slow", 0))
