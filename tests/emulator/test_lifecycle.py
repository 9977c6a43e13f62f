"""in_progress -> ended; cancel; 24-hour expiry; 29-day archive; the unspecified cases."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import anthropic
import httpx
import pytest

from airflow_batches.api import Client, ResultsExpiredError
from airflow_batches.emulator.clock import Clock
from airflow_batches.emulator.testing import RunningEmulator
from tests.emulator.conftest import requests

DAY = 86400


def _result_types(client: Client, batch_id: str) -> Counter[str]:
    return Counter(r.result.type for r in client.results(batch_id))


def test_counts_stay_processing_until_the_end(emulator: RunningEmulator, client: Client) -> None:
    # 20 s of work, so the batch is still running however long this test stalls (see below).
    emulator.configure(latency=0.05, workers=1)
    batch = client.create(requests(400))
    emulator.wait_processed(batch.id, 3)
    running = client.retrieve(batch.id)
    assert running.processing_status == "in_progress"
    assert running.request_counts.processing == 400
    assert running.request_counts.succeeded == 0
    assert emulator.admin.batch(batch.id)["succeeded"] >= 3


def test_cancel_mid_way(emulator: RunningEmulator, client: Client) -> None:
    # 20 s of work: the cancel lands mid-way even on a machine so busy that this test stalls
    # for seconds between two calls (a CI run with 3 suites on 2 cores stalled past 3 s: all 60
    # requests of an earlier version were answered before its cancel). The cancel ends the
    # batch without waiting for the rest.
    emulator.configure(latency=0.05, workers=1)
    batch = client.create(requests(400))
    emulator.wait_processed(batch.id, 5)
    canceling = client.cancel(batch.id)
    assert canceling.processing_status == "canceling"
    again = client.cancel(batch.id)
    assert again.processing_status in ("canceling", "ended")
    emulator.wait_ended(batch.id)
    ended = client.retrieve(batch.id)
    counts = ended.request_counts
    assert counts.succeeded >= 5
    assert counts.canceled > 0
    assert counts.succeeded + counts.canceled == 400
    assert ended.ended_at is not None
    assert ended.cancel_initiated_at is not None
    assert ended.ended_at >= ended.cancel_initiated_at
    types = _result_types(client, batch.id)
    assert types == Counter(succeeded=counts.succeeded, canceled=counts.canceled)


def test_expiry_with_an_advanced_clock(emulator: RunningEmulator, client: Client) -> None:
    emulator.configure(paused=True)
    batch = client.create(requests(4))
    emulator.advance_clock(23 * 3600)
    assert client.retrieve(batch.id).processing_status == "in_progress"
    emulator.advance_clock(3600 + 1)
    ended = client.retrieve(batch.id)
    assert ended.processing_status == "ended"
    assert ended.request_counts.expired == 4
    assert ended.ended_at == ended.expires_at
    assert _result_types(client, batch.id) == Counter(expired=4)


def test_partial_expiry(emulator: RunningEmulator, client: Client) -> None:
    emulator.configure(latency=0.05, workers=1)  # 20 s of work: it expires mid-way
    batch = client.create(requests(400))
    emulator.wait_processed(batch.id, 3)
    emulator.advance_clock(DAY + 1)
    emulator.wait_ended(batch.id)
    counts = client.retrieve(batch.id).request_counts
    assert counts.succeeded >= 3
    assert counts.expired > 0
    assert counts.succeeded + counts.expired == 400


def test_a_scaled_clock_runs_scale_times_real_time_and_never_backwards() -> None:
    # Real time is injected: 24 emulated hours pass in a quarter of a (fake) second.
    real = [500.0]
    clock = Clock(1_000.0, scale=400_000, monotonic=lambda: real[0])
    real[0] += 0.25
    assert clock.now() == 1_000.0 + 0.25 * 400_000 > 1_000.0 + DAY
    clock.set_scale(1.0)  # re-bases: the time already run stays
    assert clock.now() == 101_000.0
    real[0] += 2.0
    assert clock.now() == 101_002.0
    assert clock.advance(10) == 101_012.0
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="time scale must be > 0"):
        clock.set_scale(0)
    assert clock.now() == 101_012.0


def test_the_configured_time_scale_drives_the_served_clock(
    emulator_factory: Callable[..., RunningEmulator],
) -> None:
    # What the scale does to time is the test above; expiry follows the clock however it
    # moves (test_expiry_with_an_advanced_clock). Here: the setting reaches the clock.
    fast = emulator_factory(time_scale=400_000, paused=True)
    assert fast.admin.clock()["time_scale"] == 400_000
    fast.configure(time_scale=2)
    assert fast.admin.clock()["time_scale"] == 2


def test_archive_after_29_days(emulator: RunningEmulator, client: Client) -> None:
    batch = client.create(requests(2))
    emulator.wait_ended(batch.id)
    emulator.advance_clock(28 * DAY)
    assert client.retrieve(batch.id).archived_at is None
    assert len(list(client.results(batch.id))) == 2

    emulator.advance_clock(DAY + 1)
    archived = client.retrieve(batch.id)
    assert archived.archived_at == archived.created_at + timedelta(days=29)
    assert archived.processing_status == "ended"
    assert archived.results_url is not None
    assert [b.id for b in client.list()] == [batch.id]
    with pytest.raises(ResultsExpiredError):
        list(client.results(archived))

    response = httpx.get(
        archived.results_url,
        headers={"x-api-key": emulator.api_key, "anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"
    assert "no longer available" in response.json()["error"]["message"]
    with (
        anthropic.Anthropic(api_key=emulator.api_key, base_url=emulator.base_url) as sdk,
        pytest.raises(anthropic.NotFoundError),
    ):
        list(sdk.messages.batches.results(batch.id))
    assert not (emulator.data_dir / "batches" / batch.id / "results.jsonl").exists()


def _raw(emulator: RunningEmulator, method: str, path: str) -> httpx.Response:
    return httpx.request(
        method,
        f"{emulator.base_url}/v1/messages/batches{path}",
        headers={"x-api-key": emulator.api_key, "anthropic-version": "2023-06-01"},
    )


def test_default_answers_of_the_unspecified_cases(
    emulator: RunningEmulator, client: Client
) -> None:
    emulator.configure(paused=True)
    batch = client.create(requests(2))
    delete = _raw(emulator, "DELETE", f"/{batch.id}")
    assert (delete.status_code, delete.json()["error"]["type"]) == (400, "invalid_request_error")
    results = _raw(emulator, "GET", f"/{batch.id}/results")
    assert (results.status_code, results.json()["error"]["type"]) == (
        400,
        "invalid_request_error",
    )
    client.cancel(batch.id)
    emulator.wait_ended(batch.id)
    cancel = _raw(emulator, "POST", f"/{batch.id}/cancel")
    assert (cancel.status_code, cancel.json()["error"]["type"]) == (400, "invalid_request_error")


def test_configured_answers_of_the_unspecified_cases(
    emulator: RunningEmulator, client: Client
) -> None:
    emulator.configure(
        paused=True,
        delete_unfinished="conflict",
        results_unfinished="not_found",
        cancel_ended="ok",
        results_archived="invalid_request",
    )
    batch = client.create(requests(2))
    assert _raw(emulator, "DELETE", f"/{batch.id}").status_code == 409
    assert _raw(emulator, "GET", f"/{batch.id}/results").status_code == 404
    emulator.configure(paused=False)
    emulator.wait_ended(batch.id)
    cancel = _raw(emulator, "POST", f"/{batch.id}/cancel")
    assert cancel.status_code == 200
    assert cancel.json()["processing_status"] == "ended"
    emulator.advance_clock(30 * DAY)
    assert _raw(emulator, "GET", f"/{batch.id}/results").status_code == 400

    emulator.configure(delete_unfinished="allow", paused=True)
    running = client.create(requests(3))
    assert _raw(emulator, "DELETE", f"/{running.id}").status_code == 200
    assert _raw(emulator, "GET", f"/{running.id}").status_code == 404
    assert not (emulator.data_dir / "batches" / running.id).exists()


def test_the_clock_is_visible_to_the_admin(emulator: RunningEmulator) -> None:
    before = emulator.admin.clock()
    after = emulator.advance_clock(3600)
    assert after.timestamp() - before["epoch"] >= 3600
    assert emulator.admin.clock()["epoch"] >= after.timestamp()


def test_the_fresh_batch_404_glitch(emulator: RunningEmulator, client: Client) -> None:
    emulator.configure(not_found_after_create=60)
    batch = client.create(requests(1))
    assert _raw(emulator, "GET", f"/{batch.id}").status_code == 404
    emulator.advance_clock(61)
    assert client.retrieve(batch.id).id == batch.id


def test_every_answer_has_a_request_id(emulator: RunningEmulator, client: Client) -> None:
    batch = client.create(requests(1))
    emulator.wait_ended(batch.id)
    answers = [
        _raw(emulator, "GET", ""),
        _raw(emulator, "GET", f"/{batch.id}"),
        _raw(emulator, "GET", f"/{batch.id}/results"),
        _raw(emulator, "POST", f"/{batch.id}/cancel"),
        _raw(emulator, "DELETE", f"/{batch.id}"),
        _raw(emulator, "PUT", f"/{batch.id}"),
        httpx.get(f"{emulator.base_url}/_emulator/stats"),
    ]
    ids = [a.headers["request-id"] for a in answers]
    assert all(i.startswith("req_") for i in ids)
    assert len(set(ids)) == len(ids)
    assert answers[5].status_code == 405
    assert answers[5].json()["error"]["type"] == "invalid_request_error"


def test_a_cancel_can_take_time(emulator: RunningEmulator, client: Client) -> None:
    emulator.configure(paused=True, cancel_seconds=600)
    batch = client.create(requests(2))
    client.cancel(batch.id)
    emulator.advance_clock(300)
    assert client.retrieve(batch.id).processing_status == "canceling"
    emulator.advance_clock(301)
    ended = client.retrieve(batch.id)
    assert ended.processing_status == "ended"
    assert ended.request_counts.canceled == 2
