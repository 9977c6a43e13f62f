"""The triggerer's start-up heap is frozen once, at the first shared poller's second round,
unless told not to."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

CODE = textwrap.dedent(
    """
    import asyncio, gc, json
    from airflow_batches.jobs.wait._poller import shared_poller

    class Pages:
        async def list_page_listed(self, **kwargs):
            raise AssertionError("no page is read for one batch")

        async def retrieve(self, batch_id):
            raise AssertionError("not reached: the test stops at the round's first call")

    async def main():
        async def make():
            raise AssertionError("no client is made without a subscriber")

        counts = [gc.get_freeze_count()]
        for key in "ab":
            poller = shared_poller(key, make)
            counts.append(gc.get_freeze_count())
            poller._client = Pages()
            for _ in range(2):
                kept.append([[] for _ in range(1000)])  # objects made since: frozen or not
                try:
                    await poller._round()
                except Exception:
                    pass
                counts.append(gc.get_freeze_count())
        return counts

    kept = []
    print(json.dumps(asyncio.run(main())))
    """
)


def run(env_value: str | None) -> list[int]:
    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW_BATCHES_GC_FREEZE"}
    if env_value is not None:
        env["AIRFLOW_BATCHES_GC_FREEZE"] = env_value
    done = subprocess.run(
        [sys.executable, "-c", CODE], env=env, capture_output=True, text=True, check=True
    )
    counts: list[int] = json.loads(done.stdout.strip().splitlines()[-1])
    return counts


def test_the_heap_is_frozen_at_the_first_poller_and_at_its_second_round() -> None:
    before, made, first_round, second_round, *other_poller = run(None)
    assert before == 0
    assert made > 10_000  # the interpreter's and the package's objects at that moment
    assert first_round <= made  # frozen objects freed since may lower the count
    assert second_round > first_round + 1000  # what the first round's triggers made since
    # Another poller freezes nothing more.
    assert all(count <= second_round for count in other_poller)


@pytest.mark.parametrize("value", ["0", "false", "off"])
def test_the_variable_leaves_the_collector_alone(value: str) -> None:
    assert run(value) == [0] * 7


def test_a_moment_is_named() -> None:
    from airflow_batches.jobs.wait._heap import freeze_startup_heap

    with pytest.raises(ValueError, match="moment"):
        freeze_startup_heap("later")
