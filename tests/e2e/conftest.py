"""Fixtures for the live-stack tests; the harness itself lives in ``tests/e2e/live.py``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.live import LiveAirflow

E2E_DAGS = Path(__file__).parent / "dags"


@pytest.fixture(scope="module")
def live_airflow_factory() -> Iterator[Callable[..., LiveAirflow]]:
    """Start live Airflow stacks that are torn down at the end of the test module.

    Call it as ``live_airflow_factory(dags_folder, env=..., pythonpath=...)`` (the arguments of
    :class:`LiveAirflow`) from a module-scoped fixture, so a module pays the ~15 s start-up once.
    """
    stacks: list[LiveAirflow] = []

    def start(dags_folder: Path | str = E2E_DAGS, **kwargs: Any) -> LiveAirflow:
        stack = LiveAirflow(dags_folder, **kwargs)
        stacks.append(stack)
        return stack.start()

    yield start
    for stack in reversed(stacks):
        stack.stop()
