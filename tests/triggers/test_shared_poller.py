"""Many BatchTriggers in one event loop, as on one triggerer, sharing one status poller.

Every test runs real triggers against the emulator served over HTTP; the poller's behaviour
in time (freshness, failures standing for a round) is unit-tested with an injected clock in
tests/jobs/wait/test_poller.py.
"""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest

from airflow_batches.api import AsyncClient, Client
from airflow_batches.emulator.testing import RunningEmulator
from airflow_batches.jobs.wait import shared_poller
from airflow_batches.jobs.wait._poller import _POLLERS, SharedPoller
from tests.triggers._support import CONN, first_event, make, recorded, requests, until

pytestmark = pytest.mark.anyio


class ListRefusingGateway(httpx.AsyncBaseTransport):
    """A gateway in front of the emulator that lets every call through but listing."""

    refused = 0

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path == "/v1/messages/batches":
            type(self).refused += 1
            error = {"type": "permission_error", "message": "listing is not allowed here"}
            return httpx.Response(403, json={"type": "error", "error": error})
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def current_poller() -> SharedPoller | None:
    return _POLLERS.get(asyncio.get_running_loop(), {}).get(CONN)


def subscribed() -> frozenset[str]:
    poller = current_poller()
    return poller.subscribed if poller else frozenset()


async def test_each_trigger_gets_its_own_event(emulator: RunningEmulator, client: Client) -> None:
    emulator.configure(paused=True)
    sizes = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    ids = [client.create(requests(n)).id for n in sizes]
    pair = [client.create(requests(2)).id, client.create(requests(3)).id]
    jobs = [[i] for i in ids] + [pair]
    tasks = [asyncio.create_task(first_event(make(job))) for job in jobs]
    await until(lambda: subscribed() == {*ids, *pair})
    poller = current_poller()
    client.cancel(ids[3])  # one trigger's batch ends canceled, the others succeed
    emulator.configure(paused=False, latency=0.0)
    events = await asyncio.gather(*tasks)

    for job, event in zip(jobs, events, strict=True):
        assert event.status == "ended"
        assert [b.id for b in event.batches] == job
        assert all(b.is_ended for b in event.batches)
    by_id = {b.id: b for event in events for b in event.batches}
    for batch_id, size in zip(ids, sizes, strict=True):
        counts = by_id[batch_id].request_counts
        if batch_id == ids[3]:
            assert counts.canceled == size and counts.succeeded == 0
        else:
            assert counts.succeeded == size
    assert by_id[pair[1]].request_counts.succeeded == 3
    assert poller is not None and poller.stats.pages >= 1
    assert current_poller() is None  # the last trigger to end dropped it


async def test_a_cancelled_trigger_unregisters(emulator: RunningEmulator, client: Client) -> None:
    emulator.configure(paused=True)
    ids = [client.create(requests(1)).id for _ in range(3)]
    tasks = [asyncio.create_task(first_event(make([i]))) for i in ids]
    await until(lambda: subscribed() == set(ids))
    poller = current_poller()
    assert poller is not None

    tasks[0].cancel()  # what the triggerer does when the deferred task is killed
    with pytest.raises(asyncio.CancelledError):
        await tasks[0]
    assert poller.subscribed == {ids[1], ids[2]}
    assert current_poller() is poller
    assert client.retrieve(ids[0]).processing_status == "in_progress"  # cancel is on_kill's

    emulator.configure(paused=False, latency=0.0)
    events = await asyncio.gather(*tasks[1:])
    assert [[b.id for b in e.batches] for e in events] == [[ids[1]], [ids[2]]]
    assert current_poller() is None
    with pytest.raises(RuntimeError, match="no client"):
        _ = poller.client  # closed with its last subscriber


async def test_a_failed_list_is_a_transient_error_for_every_trigger(
    emulator: RunningEmulator, client: Client
) -> None:
    ids = [client.create(requests(1)).id for _ in range(5)]
    for batch_id in ids:
        emulator.wait_ended(batch_id)
    emulator.configure(faults={"list": {"rate_500": 1.0, "max_count": 1}})
    triggers = [make([i], max_transient_errors=1) for i in ids]
    logs = [recorded(t) for t in triggers]

    events = await asyncio.gather(*(first_event(t) for t in triggers))

    assert [e.status for e in events] == ["ended"] * 5
    assert emulator.admin.stats()["endpoints"]["list"]["faults"] == {"500": 1}
    for log in logs:  # the one failed call, counted once by each trigger that waited on it
        [warning] = log.warnings()
        assert warning.startswith("Poll failed (500 api_error: GET /v1/messages/batches")
        assert "attempt 1 of 1" in warning


async def test_a_failed_list_fails_triggers_that_tolerate_no_error(
    emulator: RunningEmulator, client: Client
) -> None:
    ids = [client.create(requests(1)).id for _ in range(3)]
    emulator.configure(faults={"list": {"rate_500": 1.0}})
    events = await asyncio.gather(*(first_event(make([i], max_transient_errors=0)) for i in ids))
    assert [e.status for e in events] == ["error"] * 3
    assert all("1 consecutive polls failed" in e.message for e in events)
    assert emulator.admin.calls("retrieve") == 0


async def test_batches_beyond_the_list_are_retrieved(
    emulator: RunningEmulator, client: Client
) -> None:
    ids = []
    for _ in range(6):
        ids.append(client.create(requests(1)).id)
        emulator.advance_clock(1)  # distinct creation times, oldest first
    for batch_id in ids:
        emulator.wait_ended(batch_id)
    # The list reaches the two newest batches; the four older ones need a retrieve each.
    poller = shared_poller(CONN, make([])._client, page_size=2, max_pages=1)

    events = await asyncio.gather(*(first_event(make([i])) for i in ids))

    assert [[b.id for b in e.batches] for e in events] == [[i] for i in ids]
    assert [e.status for e in events] == ["ended"] * 6
    assert (poller.stats.rounds, poller.stats.pages, poller.stats.retrieves) == (1, 1, 4)
    assert emulator.admin.calls("retrieve") == 4


async def test_a_refused_list_turns_the_poller_to_retrieves(
    emulator: RunningEmulator, client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.configure(paused=True)
    ids = [client.create(requests(1)).id for _ in range(3)]
    caplog.set_level(logging.WARNING, logger="airflow_batches.jobs.wait._poller")
    ListRefusingGateway.refused = 0

    async def through_gateway() -> AsyncClient:
        return AsyncClient(
            api_key=emulator.api_key,
            base_url=emulator.base_url,
            max_retries=0,
            transport=ListRefusingGateway(),
        )

    poller = shared_poller(CONN, through_gateway)
    tasks = [asyncio.create_task(first_event(make([i]))) for i in ids]
    await until(lambda: poller.stats.retrieves >= 6)  # two rounds of retrieves
    emulator.configure(paused=False, latency=0.0)
    events = await asyncio.gather(*tasks)

    assert [e.status for e in events] == ["ended"] * 3
    assert ListRefusingGateway.refused == 1  # asked once, then never again
    assert emulator.admin.calls("list") == 0
    assert poller.stats.pages == 0
    assert any("Listing batches was refused" in r.getMessage() for r in caplog.records)


async def test_triggers_of_two_connections_use_two_pollers(
    emulator: RunningEmulator, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = "mb_trigger_other"
    conn = {"conn_type": "message_batches", "host": emulator.base_url, "password": emulator.api_key}
    monkeypatch.setenv(f"AIRFLOW_CONN_{other.upper()}", json.dumps(conn))
    emulator.configure(paused=True)
    a, b = client.create(requests(1)).id, client.create(requests(1)).id
    tasks = [
        asyncio.create_task(first_event(make([a]))),
        asyncio.create_task(first_event(make([b], conn_id=other))),
    ]
    pollers = _POLLERS.setdefault(asyncio.get_running_loop(), {})
    await until(lambda: CONN in pollers and other in pollers)
    assert pollers[CONN].subscribed == {a}
    assert pollers[other].subscribed == {b}
    emulator.configure(paused=False, latency=0.0)
    events = await asyncio.gather(*tasks)
    assert [e.status for e in events] == ["ended", "ended"]
