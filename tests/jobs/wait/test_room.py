"""WaitRoom: the polls waiting for the shared poller's next round."""

from __future__ import annotations

import asyncio

import pytest

from airflow_batches.jobs.wait._room import WaitRoom

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_poll_wakes_when_the_last_of_its_batches_is_read() -> None:
    room = WaitRoom()
    waiter = room.enter(["a", "b"], since=10.0)
    task = asyncio.create_task(room.wait(waiter))
    room.heard("a", 10.0)
    await asyncio.sleep(0)
    assert not task.done() and room.wanted() == ["b"]
    room.heard("b", 11.0)
    await task
    assert len(room) == 0


async def test_a_reading_sent_before_the_poll_asked_does_not_answer_it() -> None:
    room = WaitRoom()
    early = room.enter(["a"], since=5.0)
    late = room.enter(["a"], since=20.0)
    room.heard("a", 10.0)  # fresh enough for the first poll only
    assert early.future.done() and not late.future.done()
    assert room.wanted() == ["a"]
    room.heard_all(20.0)
    assert late.future.done() and len(room) == 0


async def test_a_cancelled_wait_leaves_the_room_and_others_stay() -> None:
    room = WaitRoom()
    gone = room.enter(["a", "b"], since=0.0)
    stays = room.enter(["b"], since=0.0)
    task = asyncio.create_task(room.wait(gone))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert room.wanted() == ["b"]
    room.heard("b", 0.0)
    assert stays.future.done() and len(room) == 0


async def test_a_failure_wakes_every_poll_with_it() -> None:
    room = WaitRoom()
    waiters = [room.enter([batch], since=0.0) for batch in ("a", "b", "a")]
    room.fail(RuntimeError("broken client"))
    for waiter in waiters:
        with pytest.raises(RuntimeError, match="broken client"):
            await room.wait(waiter)
    assert len(room) == 0
