"""The seed of a test whose random draws change from run to run: printed, and replayable.

A test that draws (a moment to kill a process, the emulator's faults of a soak) asks for the
``random_seed`` fixture and seeds everything it draws from it. The seed is fresh on each run,
so runs explore different draws; it is printed (pytest shows it with a failure's captured
output), and ``AIRFLOW_BATCHES_TEST_SEED=<seed>`` replays it.
"""

from __future__ import annotations

import os
import secrets

import pytest

SEED_ENV = "AIRFLOW_BATCHES_TEST_SEED"


def run_seed() -> int:
    """``$AIRFLOW_BATCHES_TEST_SEED`` if set, else a fresh seed; printed either way."""
    text = os.environ.get(SEED_ENV, "").strip()
    if text:
        try:
            seed = int(text)
        except ValueError:
            raise ValueError(f"{SEED_ENV}={text!r}: the seed must be an integer") from None
    else:
        seed = secrets.randbits(32)
    print(f"random seed {seed} (replay with {SEED_ENV}={seed})")
    return seed


@pytest.fixture
def random_seed() -> int:
    return run_seed()
