"""SharedPoller against the emulator over HTTP, with its clock injected where timing matters."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import pytest

from airflow_batches.api import AsyncClient, Client, InternalServerError, MessageBatch
from airflow_batches.emulator.testing import RunningEmulator
from airflow_batches.jobs.wait import shared_poller
from airflow_batches.jobs.wait._poller import _POLLERS, SharedPoller
from tests.triggers._support import requests, until

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def client(emulator: RunningEmulator) -> Client:
    return Client(api_key=emulator.api_key, base_url=emulator.base_url)


def factory(
    emulator: RunningEmulator, made: list[AsyncClient] | None = None
) -> Callable[[], Awaitable[AsyncClient]]:
    async def make() -> AsyncClient:
        client = AsyncClient(api_key=emulator.api_key, base_url=emulator.base_url, max_retries=0)
        if made is not None:
            made.append(client)
        return client

    return make


def calls(emulator: RunningEmulator) -> tuple[int, int]:
    return emulator.admin.calls("list"), emulator.admin.calls("retrieve")


async def test_a_fresh_reading_answers_without_a_call(
    emulator: RunningEmulator, client: Client
) -> None:
    b1, b2, b3 = (client.create(requests(1)).id for _ in range(3))
    clock = FakeClock()
    poller = SharedPoller(factory(emulator), clock=clock)
    async with (
        poller.subscribe([b1, b2], max_age=10) as slow_a,
        poller.subscribe([b1, b3], max_age=10) as slow_b,
        poller.subscribe([b1], max_age=1) as fast,
    ):
        first = await slow_a([b1, b2])
        assert all(isinstance(a, MessageBatch) for a in first.values())
        assert calls(emulator) == (1, 0)  # one page read b1, b2 and b3 alike

        clock.now += 5
        answers = await slow_b([b1, b3])  # read 5 s ago: fresh enough for a 10 s max age
        assert answers[b1] is first[b1]  # unchanged: the very same object
        assert calls(emulator) == (1, 0)
        await fast([b1])  # too old for a 1 s max age: a page again, which reads b2, b3 too
        assert calls(emulator) == (2, 0)

        clock.now += 6
        await slow_b([b1, b3])  # read 6 s ago by the fast one's page: from memory
        assert calls(emulator) == (2, 0)
        clock.now += 5
        await slow_b([b1, b3])  # 11 s: read again
        assert calls(emulator) == (3, 0)
        assert (poller.stats.rounds, poller.stats.pages, poller.stats.retrieves) == (3, 3, 0)

    lonely = SharedPoller(factory(emulator), clock=clock)
    async with lonely.subscribe([b1], max_age=1) as poll:
        await poll([b1])  # one batch subscribed in all: a retrieve, not a page
    assert calls(emulator) == (3, 1)


async def test_a_failed_list_stands_for_every_batch_until_it_is_stale(
    emulator: RunningEmulator, client: Client
) -> None:
    ids = [client.create(requests(1)).id for _ in range(4)]
    emulator.configure(faults={"list": {"rate_500": 1.0, "max_count": 1}})
    clock = FakeClock()
    poller = SharedPoller(factory(emulator), clock=clock)
    async with (
        poller.subscribe(ids[:2], max_age=10) as a,
        poller.subscribe(ids[2:], max_age=10) as b,
    ):
        failed = await a(ids[:2])
        assert all(isinstance(x, InternalServerError) for x in failed.values())
        # Another trigger polling within its max age gets the same failure: no storm of
        # calls against a failing API from every trigger in turn.
        also = await b(ids[2:])
        assert set(map(id, also.values())) == set(map(id, failed.values()))
        assert calls(emulator) == (1, 0)
        assert poller.stats.list_failures == 1

        clock.now += 11
        answers = await b(ids[2:])
        assert all(isinstance(x, MessageBatch) for x in answers.values())
        assert calls(emulator) == (2, 0)


async def test_polls_made_together_share_one_round(
    emulator: RunningEmulator, client: Client
) -> None:
    ids = [client.create(requests(1)).id for _ in range(20)]
    poller = SharedPoller(factory(emulator), clock=FakeClock())
    async with contextlib.AsyncExitStack() as stack:
        polls = [await stack.enter_async_context(poller.subscribe([i], max_age=1)) for i in ids]
        results = await asyncio.gather(*(poll([i]) for poll, i in zip(polls, ids, strict=True)))
    assert [list(r) for r in results] == [[i] for i in ids]
    assert all(
        isinstance(r[i], MessageBatch) and r[i].id == i for r, i in zip(results, ids, strict=True)
    )
    assert (poller.stats.rounds, poller.stats.pages, poller.stats.retrieves) == (1, 1, 0)


async def test_far_batches_are_retrieved_without_paging_for_them(
    emulator: RunningEmulator, client: Client
) -> None:
    ids = []
    for _ in range(5):
        ids.append(client.create(requests(1)).id)
        emulator.advance_clock(1)
    old = ids[:2]
    clock = FakeClock()
    poller = SharedPoller(factory(emulator), clock=clock, page_size=2, max_pages=1)
    async with poller.subscribe(old, max_age=1) as poll:
        await poll(old)  # page 1 holds the two newest; the cap is hit; both retrieved
        assert (poller.stats.pages, poller.stats.retrieves) == (1, 2)
        clock.now += 2
        answers = await poll(old)  # known to be older than the page reached: no page
        assert (poller.stats.pages, poller.stats.retrieves) == (1, 4)
        assert [answers[i].id for i in old] == old  # type: ignore[union-attr]


async def test_a_deleted_batch_is_looked_up_and_reported(
    emulator: RunningEmulator, client: Client
) -> None:
    keep, gone = client.create(requests(1)).id, client.create(requests(1)).id
    emulator.wait_ended(gone)
    clock = FakeClock()
    poller = SharedPoller(factory(emulator), clock=clock)
    async with poller.subscribe([keep, gone], max_age=1) as poll:
        await poll([keep, gone])
        client.delete(gone)
        clock.now += 2
        answers = await poll([keep, gone])
    assert isinstance(answers[keep], MessageBatch)
    assert getattr(answers[gone], "status_code", None) == 404  # WaitCore judges it
    assert calls(emulator) == (2, 1)


async def test_a_poll_cancelled_mid_round_leaves_nothing_behind(
    emulator: RunningEmulator, client: Client
) -> None:
    ids = [client.create(requests(1)).id for _ in range(2)]
    emulator.configure(faults={"list": {"rate_slow": 1.0, "slow_seconds": 30}})
    made: list[AsyncClient] = []
    poller = SharedPoller(factory(emulator, made), clock=FakeClock())
    async with poller.subscribe(ids, max_age=1) as poll:
        task = asyncio.create_task(poll(ids))
        await until(lambda: poller.stats.rounds > 0)  # the round's list call is held
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not poller._waiting
    # The last subscriber left: the held round was cancelled, the client closed.
    assert poller.subscribed == frozenset()
    assert poller._task is not None and poller._task.cancelled()
    assert made[0]._http.is_closed


async def test_a_client_that_cannot_be_made_fails_every_subscriber(
    emulator: RunningEmulator,
) -> None:
    attempts = 0

    async def broken() -> AsyncClient:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0)
        raise ValueError("connection 'x' has no API key")

    poller = SharedPoller(broken)

    async def subscriber() -> None:
        async with poller.subscribe(["msgbatch_a"], max_age=1):
            raise AssertionError("not reached")

    results = await asyncio.gather(subscriber(), subscriber(), return_exceptions=True)
    assert [str(r) for r in results] == ["connection 'x' has no API key"] * 2
    assert attempts == 1  # made once for both
    with pytest.raises(ValueError, match="no API key"):
        await subscriber()
    assert attempts == 2  # and tried afresh by the next


def test_each_event_loop_has_its_own_pollers(emulator: RunningEmulator) -> None:
    async def get(key: str) -> SharedPoller:
        return shared_poller(key, factory(emulator))

    async def twice() -> tuple[SharedPoller, SharedPoller, SharedPoller]:
        return await get("a"), await get("a"), await get("b")

    first = asyncio.run(twice())
    second = asyncio.run(twice())
    assert first[0] is first[1] and first[0] is not first[2]
    assert second[0] is not first[0]


async def test_a_closed_poller_leaves_the_registry(emulator: RunningEmulator) -> None:
    poller = shared_poller("c", factory(emulator))
    async with poller.subscribe([], max_age=1):
        assert shared_poller("c", factory(emulator)) is poller
    assert "c" not in _POLLERS[asyncio.get_running_loop()]
    assert shared_poller("c", factory(emulator)) is not poller


async def test_a_listed_batch_is_parsed_again_only_when_it_changed(
    emulator: RunningEmulator, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_batches.api._listing import ListedBatch

    parsed: list[str] = []
    parse = ListedBatch.parse

    def counted(self: ListedBatch) -> MessageBatch:
        parsed.append(self.id)
        return parse(self)

    monkeypatch.setattr(ListedBatch, "parse", counted)
    emulator.configure(paused=True)  # nothing moves between the polls but the cancel
    ids = [client.create(requests(1)).id for _ in range(3)]
    clock = FakeClock()
    poller = SharedPoller(factory(emulator), clock=clock)
    async with poller.subscribe(ids, max_age=1) as poll:
        first = await poll(ids)
        assert sorted(parsed) == sorted(ids)
        parsed.clear()
        clock.now += 2
        second = await poll(ids)
        assert parsed == [] and poller.stats.pages == 2  # read again, nothing had changed
        assert all(second[i] is first[i] for i in ids)
        client.cancel(ids[1])
        clock.now += 2
        third = await poll(ids)
        assert parsed == [ids[1]]
        changed = third[ids[1]]
        assert isinstance(changed, MessageBatch) and changed.cancel_initiated_at is not None
        assert third[ids[0]] is first[ids[0]]
