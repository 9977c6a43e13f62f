"""The triggerer's start-up heap is frozen once, at the first shared poller's first round, unless
told not to."""

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
    from airflow_batches.jobs.wait._poller import SharedPoller

    class Pages:
        async def list_page_listed(self, **kwargs):
            raise AssertionError("no page is read for one batch")

        async def retrieve(self, batch_id):
            raise AssertionError("not reached: the test stops at the first round's answer")

    async def main():
        counts = [gc.get_freeze_count()]
        for key in "ab":
            poller = SharedPoller(lambda: None)
            poller._client = Pages()
            try:
                await poller._round()
            except Exception:
                pass
            counts.append(gc.get_freeze_count())
        return counts

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


def test_the_first_round_freezes_the_heap_once() -> None:
    before, first, second = run(None)
    assert before == 0
    assert first > 10_000  # the interpreter's and the package's objects at that moment
    assert second <= first  # a second poller freezes nothing more (frozen objects may be freed)


@pytest.mark.parametrize("value", ["0", "false", "off"])
def test_the_variable_leaves_the_collector_alone(value: str) -> None:
    assert run(value) == [0, 0, 0]
