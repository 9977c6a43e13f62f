"""BatchTrigger driven for real against the emulator, with near-zero poll intervals."""

from __future__ import annotations

import json
import time

import pytest

from airflow_batches.api import Client
from airflow_batches.emulator.testing import RunningEmulator
from airflow_batches.triggers.batch import BatchTrigger
from tests.triggers._support import first_event, make, requests

pytestmark = pytest.mark.anyio


def test_serialize_round_trip_holds_no_key(emulator: RunningEmulator) -> None:
    trigger = make(["msgbatch_a", "msgbatch_b"], deadline=123.0, cancel_on_timeout=True)
    path, kwargs = trigger.serialize()
    assert path == "airflow_batches.triggers.batch.BatchTrigger"
    rebuilt = BatchTrigger(**kwargs)
    assert rebuilt.serialize() == (path, kwargs)
    assert emulator.api_key not in json.dumps(kwargs)
    assert set(kwargs) == {
        "batch_ids",
        "conn_id",
        "poke_interval",
        "max_poke_interval",
        "backoff_factor",
        "deadline",
        "cancel_on_timeout",
        "cancel_on_kill",
        "max_transient_errors",
        "not_found_grace_until",
        "started_at",
    }


async def test_runs_until_every_batch_has_ended(emulator: RunningEmulator, client: Client) -> None:
    emulator.configure(latency=0.02, workers=1)
    ids = [client.create(requests(5)).id, client.create(requests(3)).id]
    event = await first_event(make(ids))
    assert event.status == "ended"
    assert [b.id for b in event.batches] == ids
    assert all(b.is_ended for b in event.batches)
    assert sum(b.request_counts.succeeded for b in event.batches) == 8


async def test_timeout_cancels_when_asked(emulator: RunningEmulator, client: Client) -> None:
    emulator.configure(paused=True)
    batch = client.create(requests(2))
    event = await first_event(make([batch.id], deadline=time.time() + 0.1, cancel_on_timeout=True))
    assert event.status == "timeout"
    assert f"canceled {batch.id}" in event.message
    assert client.retrieve(batch.id).processing_status in ("canceling", "ended")


async def test_timeout_leaves_batches_running_by_default(
    emulator: RunningEmulator, client: Client
) -> None:
    emulator.configure(paused=True)
    batch = client.create(requests(2))
    event = await first_event(make([batch.id], deadline=time.time() + 0.05))
    assert event.status == "timeout"
    assert client.retrieve(batch.id).processing_status == "in_progress"


async def test_on_kill_cancels_unfinished_batches(
    emulator: RunningEmulator, client: Client
) -> None:
    emulator.configure(paused=True)
    batch = client.create(requests(2))
    trigger = make([batch.id])
    await trigger.on_kill()
    assert client.retrieve(batch.id).processing_status in ("canceling", "ended")
    kept = client.create(requests(1))
    await make([kept.id], cancel_on_kill=False).on_kill()
    assert client.retrieve(kept.id).processing_status == "in_progress"


async def test_transient_errors_are_tolerated(emulator: RunningEmulator, client: Client) -> None:
    batch = client.create(requests(2))
    emulator.wait_ended(batch.id)
    emulator.configure(faults={"retrieve": {"rate_500": 1.0, "max_count": 3}})
    event = await first_event(make([batch.id], max_transient_errors=3))
    assert event.status == "ended"


async def test_too_many_transient_errors_fail(emulator: RunningEmulator, client: Client) -> None:
    batch = client.create(requests(1))
    emulator.configure(faults={"retrieve": {"rate_529": 1.0, "retry_after": 0}})
    event = await first_event(make([batch.id], max_transient_errors=2))
    assert event.status == "error"
    assert "3 consecutive polls failed" in event.message


async def test_permanent_errors_fail_at_once(emulator: RunningEmulator, client: Client) -> None:
    event = await first_event(make(["msgbatch_does_not_exist"]))
    assert event.status == "error"
    assert "404" in event.message


async def test_young_404_is_transient(emulator: RunningEmulator, client: Client) -> None:
    batch = client.create(requests(1))
    emulator.wait_ended(batch.id)
    emulator.configure(faults={})
    trigger = make(
        ["msgbatch_missing"], not_found_grace_until=time.time() + 60, max_transient_errors=2
    )
    event = await first_event(trigger)
    assert event.status == "error"
    assert "consecutive polls failed" in event.message  # retried, not failed at once


async def test_a_batch_named_twice_is_waited_for_once(
    emulator: RunningEmulator, client: Client
) -> None:
    batch = client.create(requests(2))
    trigger = make([batch.id, batch.id], deadline=time.time() + 30)
    assert trigger.batch_ids == [batch.id]
    event = await first_event(trigger)
    assert event.status == "ended"
    assert [b.id for b in event.batches] == [batch.id]
