"""Submission is idempotent: crash points and lost answers never create a second batch.

Driven against the emulator over loopback HTTP; its admin view counts the batches created.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_batches.api import APIConnectionError, APIStatusError, Client, RateLimitError
from airflow_batches.emulator.testing import RunningEmulator
from airflow_batches.jobs._store import JobStore
from airflow_batches.jobs.prepare import Limits, RequestValidator, records_from_items
from airflow_batches.jobs.submit import FileLedger, JobSubmitter, Ledger, MemoryLedger, new_ledger
from airflow_batches.jobs.submit._submitter import REQUESTS_FILE, stage_requests


class Crash(Exception):
    """A worker dying at a chosen point."""


class CrashAfterCreate(MemoryLedger):
    """Dies the first time a batch id is about to be recorded: the create succeeded."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = True

    def save(self, ledger: Ledger) -> None:
        if self.armed and any(s.batch_id for s in ledger.shards):
            self.armed = False
            raise Crash("killed between create and record")
        super().save(ledger)


def requests(n: int, prefix: str = "r") -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"{prefix}{i}",
            "params": {
                "model": "claude-haiku-4-5",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": f"hello {i}"}],
            },
        }
        for i in range(n)
    ]


def stage(tmp_path: Path, items: list[dict[str, Any]], limits: Limits | None = None) -> Any:
    validator = RequestValidator(anthropic_version="2023-06-01", limits=limits)
    return stage_requests(JobStore(tmp_path / "staging"), records_from_items(items), validator)


def submitter(client: Client, backend: Any, job: JobStore, **kw: Any) -> JobSubmitter:
    kw.setdefault("sleep", lambda s: None)
    return JobSubmitter(client, backend, lambda: job.path(REQUESTS_FILE).open("rb"), **kw)


@pytest.fixture
def client(emulator: RunningEmulator) -> Client:
    return Client(
        api_key=emulator.api_key, base_url=emulator.base_url, max_retries=0, sleep=lambda s: None
    )


def test_shards_become_batches_with_every_request_sent_once(
    tmp_path: Path, emulator: RunningEmulator, client: Client
) -> None:
    job, prepared = stage(tmp_path, requests(7), Limits(max_requests=3))
    ledger = new_ledger(prepared, anthropic_version="2023-06-01")
    submitter(client, MemoryLedger(), job).submit(ledger)
    ids = [s.batch_id for s in ledger.shards]
    assert len(ids) == 3 and all(ids)
    received = [r["custom_id"] for i in ids for r in emulator.admin.requests(str(i))]
    assert received == [f"r{i}" for i in range(7)]
    assert emulator.admin.batches_created() == 3


def test_crash_between_create_and_record_is_recovered_by_listing(
    tmp_path: Path, emulator: RunningEmulator, client: Client
) -> None:
    job, prepared = stage(tmp_path, requests(5))
    backend = CrashAfterCreate()
    ledger = new_ledger(prepared, anthropic_version="2023-06-01")
    with pytest.raises(Crash):
        submitter(client, backend, job).submit(ledger)
    assert emulator.admin.batches_created() == 1
    # The retry starts from what the ledger store kept: an intent and no batch id.
    kept = backend.load()
    assert kept is not None and kept.shards[0].intents and kept.shards[0].batch_id is None
    recovered = submitter(client, backend, job).submit(kept)
    assert recovered.shards[0].batch_id and recovered.shards[0].adopted
    assert emulator.admin.batches_created() == 1


def test_crash_before_create_is_sent_creates_exactly_one(
    tmp_path: Path, emulator: RunningEmulator, client: Client
) -> None:
    job, prepared = stage(tmp_path, requests(4))
    ledger = new_ledger(prepared, anthropic_version="2023-06-01")
    ledger.shards[0].intents.append(datetime.now(UTC))  # intent saved, then the worker died
    backend = MemoryLedger()
    backend.save(ledger)
    loaded = backend.load()
    assert loaded is not None
    submitter(client, backend, job).submit(loaded)
    assert emulator.admin.batches_created() == 1
    assert backend.load().shards[0].adopted is False  # type: ignore[union-attr]


def test_answer_lost_after_create_is_adopted_not_repeated(
    tmp_path: Path, emulator: RunningEmulator, client: Client
) -> None:
    emulator.configure(faults={"create": {"rate_drop_after": 1.0, "max_count": 1}})
    job, prepared = stage(tmp_path, requests(6))
    ledger = new_ledger(prepared, anthropic_version="2023-06-01")
    submitter(client, MemoryLedger(), job).submit(ledger)
    assert ledger.shards[0].adopted
    assert emulator.admin.batches_created() == 1
    assert emulator.admin.create_calls() == 1


def test_rejected_create_is_retried_and_created_once(
    tmp_path: Path, emulator: RunningEmulator, client: Client
) -> None:
    emulator.configure(faults={"create": {"rate_529": 1.0, "max_count": 2, "retry_after": 0}})
    job, prepared = stage(tmp_path, requests(3))
    ledger = new_ledger(prepared, anthropic_version="2023-06-01")
    waits: list[float] = []
    submitter(client, MemoryLedger(), job, sleep=waits.append).submit(ledger)
    assert len(waits) == 2
    assert len(ledger.shards[0].intents) == 3
    assert emulator.admin.batches_created() == 1


def test_definite_rejection_fails_at_once(
    tmp_path: Path, emulator: RunningEmulator, client: Client
) -> None:
    emulator.configure(max_body_bytes=50)
    job, prepared = stage(tmp_path, requests(3))
    ledger = new_ledger(prepared, anthropic_version="2023-06-01")
    with pytest.raises(APIStatusError) as info:
        submitter(client, MemoryLedger(), job).submit(ledger)
    assert info.value.status_code == 413
    assert len(ledger.shards[0].intents) == 1


def test_gives_up_after_create_attempts_without_duplicates(
    tmp_path: Path, emulator: RunningEmulator, client: Client
) -> None:
    emulator.configure(faults={"create": {"rate_drop": 1.0}})
    job, prepared = stage(tmp_path, requests(2))
    ledger = new_ledger(prepared, anthropic_version="2023-06-01")
    with pytest.raises(APIConnectionError):
        submitter(client, MemoryLedger(), job, create_attempts=3).submit(ledger)
    assert emulator.admin.batches_created() == 0
    assert len(ledger.shards[0].intents) == 3


def test_a_batch_of_another_size_or_already_claimed_is_not_adopted(
    tmp_path: Path, emulator: RunningEmulator, client: Client
) -> None:
    other = client.create(requests(9, prefix="other"))
    job, prepared = stage(tmp_path, requests(4), Limits(max_requests=2))
    ledger = new_ledger(prepared, anthropic_version="2023-06-01")
    backend = CrashAfterCreate()
    with pytest.raises(Crash):
        submitter(client, backend, job).submit(ledger)
    kept = backend.load()
    assert kept is not None
    submitter(client, backend, job).submit(kept)
    ids = {s.batch_id for s in kept.shards}
    assert other.id not in ids and len(ids) == 2
    # Shard 2 (same size as shard 1) did not adopt shard 1's batch: it created its own.
    assert emulator.admin.batches_created() == 3


def test_file_ledger_round_trips_on_storage(
    tmp_path: Path, emulator: RunningEmulator, client: Client
) -> None:
    job, prepared = stage(tmp_path, requests(2))
    backend = FileLedger(job)
    ledger = new_ledger(prepared, anthropic_version="2023-06-01")
    submitter(client, backend, job).submit(ledger)
    on_disk = json.loads(job.path("ledger.json").read_text())
    assert on_disk["shards"][0]["batch_id"] == ledger.shards[0].batch_id
    again = backend.load()
    assert again is not None
    submitter(client, backend, job).submit(again)
    assert emulator.admin.batches_created() == 1


def test_staging_reuses_the_folder_of_the_same_input(tmp_path: Path) -> None:
    job1, p1 = stage(tmp_path, requests(3))
    job2, p2 = stage(tmp_path, requests(3))
    assert p1.fingerprint == p2.fingerprint and str(job1.root) == str(job2.root)
    leftovers = [p.name for p in (tmp_path / "staging").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    assert io.BytesIO(job1.path(REQUESTS_FILE).read_bytes()).read().count(b"\n") == 3


@pytest.mark.slow
def test_sharding_at_the_real_limit_of_100000_requests(
    tmp_path: Path, emulator_factory: Any
) -> None:
    from airflow_batches.emulator.config import EmulatorConfig

    emulator = emulator_factory(EmulatorConfig(paused=True, max_queued_requests=200_000))
    client = Client(api_key=emulator.api_key, base_url=emulator.base_url, timeout=120)
    items = (
        {
            "custom_id": f"r{i}",
            "params": {
                "model": "m",
                "max_tokens": 1,
                "messages": [{"role": "user", "content": "x"}],
            },
        }
        for i in range(100_001)
    )
    validator = RequestValidator(anthropic_version="2023-06-01")  # the API's own limits
    job, prepared = stage_requests(JobStore(tmp_path / "s"), records_from_items(items), validator)
    assert [s.count for s in prepared.shards] == [100_000, 1]
    ledger = new_ledger(prepared, anthropic_version="2023-06-01")
    submitter(client, MemoryLedger(), job).submit(ledger)
    created = {b["id"]: b["n_requests"] for b in emulator.admin.batches()}
    assert sorted(created.values()) == [1, 100_000]
    assert emulator.admin.requests_received() == 100_001


def test_a_full_queue_is_waited_out_without_spending_attempts(
    tmp_path: Path, emulator: RunningEmulator, client: Client
) -> None:
    # Processing is paused, so the second shard finds the queue full (429) until our
    # injected sleep lets the first shard through.
    emulator.configure(paused=True, max_queued_requests=6)
    job, prepared = stage(tmp_path, requests(10), Limits(max_requests=5))
    ledger = new_ledger(prepared, anthropic_version="2023-06-01")
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:  # the queue drains after a while
            emulator.configure(paused=False)
            emulator.wait_ended(str(ledger.shards[0].batch_id))

    submitter(client, MemoryLedger(), job, sleep=sleep, create_attempts=1).submit(ledger)
    assert all(s.batch_id for s in ledger.shards)
    assert len(waits) == 3
    assert emulator.admin.batches_created() == 2
    assert emulator.admin.calls("list") == 0  # a 429 created nothing: no orphan search


def test_the_rate_limit_budget_ends_the_wait(
    tmp_path: Path, emulator: RunningEmulator, client: Client
) -> None:
    emulator.configure(paused=True, max_queued_requests=3)
    job, prepared = stage(tmp_path, requests(6), Limits(max_requests=3))
    ledger = new_ledger(prepared, anthropic_version="2023-06-01")
    waits: list[float] = []
    with pytest.raises(RateLimitError):
        submitter(client, MemoryLedger(), job, sleep=waits.append, max_rate_limit_wait=5).submit(
            ledger
        )
    assert sum(waits[:-1]) < 5 <= sum(waits)
    assert ledger.shards[0].batch_id
    assert ledger.shards[1].batch_id is None
    assert len(ledger.shards[1].intents) <= 10
    assert emulator.admin.batches_created() == 1
