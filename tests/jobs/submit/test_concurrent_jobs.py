"""Concurrent jobs of identical shard sizes in one workspace: a lost create answer is never
settled by taking another job's batch.

Driven against the emulator over loopback HTTP. Every batch is traced to its job by the
custom_ids the emulator received in it (each job's ids carry its own prefix).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_batches.api import APIConnectionError, Client
from airflow_batches.emulator.testing import RunningEmulator
from airflow_batches.jobs._store import JobStore
from airflow_batches.jobs.prepare import RequestValidator, records_from_items
from airflow_batches.jobs.submit import JobSubmitter, Ledger, MemoryLedger, Registry, new_ledger
from airflow_batches.jobs.submit._submitter import REQUESTS_FILE, stage_requests
from tests.jobs.submit.test_submit import requests


class Job:
    """One job: its staged requests, its ledger, its submitter."""

    def __init__(self, name: str, tmp: Path, client: Client, registry: Registry | None) -> None:
        self.name = name
        validator = RequestValidator(anthropic_version="2023-06-01")
        self.store, prepared = stage_requests(
            JobStore(tmp / name), records_from_items(requests(3, prefix=f"{name}-")), validator
        )
        self.backend = MemoryLedger()
        self.ledger: Ledger = new_ledger(prepared, anthropic_version="2023-06-01")
        self.client = client
        self.registry = registry

    def submitter(self, **kw: Any) -> JobSubmitter:
        return JobSubmitter(
            self.client,
            self.backend,
            lambda: self.store.path(REQUESTS_FILE).open("rb"),
            registry=self.registry,
            job_id=self.name,
            sleep=lambda s: None,
            **kw,
        )

    def submit(self, **kw: Any) -> Ledger:
        self.ledger = self.submitter(**kw).submit(self.ledger)
        return self.ledger

    @property
    def batch_id(self) -> str:
        batch_id = self.ledger.shards[0].batch_id
        assert batch_id
        return batch_id


def owner(emulator: RunningEmulator, batch_id: str) -> str:
    """Whose requests a batch holds, from the custom_ids the emulator received."""
    names = {r["custom_id"].split("-")[0] for r in emulator.admin.requests(batch_id)}
    assert len(names) == 1, names
    return names.pop()


@pytest.fixture
def client(emulator: RunningEmulator) -> Client:
    return Client(
        api_key=emulator.api_key, base_url=emulator.base_url, max_retries=0, sleep=lambda s: None
    )


@pytest.fixture
def registry(tmp_path: Path, emulator: RunningEmulator) -> Registry:
    return Registry.at(tmp_path / "staging", emulator.base_url, None)


def lose_next_create_answer(emulator: RunningEmulator) -> None:
    emulator.configure(faults={"create": {"rate_drop_after": 1.0, "max_count": 1}})


def test_the_server_clock_comes_from_the_answers(emulator: RunningEmulator, client: Client) -> None:
    moved_to = emulator.advance_clock(5 * 86400)
    client.list_page(limit=1)
    drift = client.server_clock.now() - moved_to
    assert abs(drift.total_seconds()) < 3  # Date is to the second; plus the time the call took


def test_a_lost_answer_adopts_its_own_batch_not_the_other_jobs(
    tmp_path: Path, emulator: RunningEmulator, client: Client, registry: Registry
) -> None:
    other = Job("b", tmp_path, client, registry)
    other.submit()
    mine = Job("a", tmp_path, client, registry)
    lose_next_create_answer(emulator)
    mine.submit()
    assert mine.ledger.shards[0].adopted
    assert owner(emulator, mine.batch_id) == "a"
    assert owner(emulator, other.batch_id) == "b"
    assert emulator.admin.batches_created() == 2


def test_an_ambiguous_case_pays_for_a_new_batch_and_records_the_candidates(
    tmp_path: Path,
    emulator: RunningEmulator,
    client: Client,
    registry: Registry,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emulator.configure(paused=True)  # batches stay in progress: a cancel can be seen
    # Job b's create reaches the API, and its worker dies before the answer: its call stays
    # open in the registry, its batch unclaimed.
    other = Job("b", tmp_path, client, registry)
    lose_next_create_answer(emulator)
    with pytest.raises(APIConnectionError):
        other.submit(create_attempts=1)
    # Job a, the same size, loses its answer too: two unclaimed candidates, one rival call.
    mine = Job("a", tmp_path, client, registry)
    lose_next_create_answer(emulator)
    mine.submit()
    assert not mine.ledger.shards[0].adopted
    assert owner(emulator, mine.batch_id) == "a"
    noted = {o.batch_id for o in registry.orphans()}
    assert len(noted) == 2 and mine.batch_id not in noted
    # Job b's retry cannot tell either: it pays too. Then both candidates are provably
    # nobody's (every call that could have made them has its batch) and are canceled.
    other.backend.save(other.ledger)
    other.submit()
    assert owner(emulator, other.batch_id) == "b"
    settled = {o.batch_id: o.settled for o in registry.orphans()}
    assert settled == dict.fromkeys(noted, "canceled")
    for batch_id in noted:
        assert emulator.admin.batch(batch_id)["cancel_initiated_at"] is not None
    created = emulator.admin.batches_created()
    extra = created - 2
    print(f"\nbatches created {created}, jobs 2, extra batches paid {extra} (canceled: {extra})")
    assert extra == 2


def test_without_a_registry_two_candidates_are_never_guessed_between(
    tmp_path: Path, emulator: RunningEmulator, client: Client
) -> None:
    stranger = Job("s", tmp_path, client, None)
    lose_next_create_answer(emulator)
    with pytest.raises(APIConnectionError):
        stranger.submit(create_attempts=1)
    mine = Job("a", tmp_path, client, None)
    lose_next_create_answer(emulator)
    mine.submit()
    assert owner(emulator, mine.batch_id) == "a"
    assert not mine.ledger.shards[0].adopted


def test_a_batch_created_before_the_call_is_not_a_candidate(
    tmp_path: Path, emulator: RunningEmulator, client: Client
) -> None:
    # Another job's batch, created just before ours was sent: outside our create window,
    # even though it is within the old two-minute clock-skew tolerance.
    Job("b", tmp_path, client, None).submit()
    emulator.advance_clock(10)
    client.list_page(limit=1)  # any answer: the client learns the server's (moved) clock
    mine = Job("a", tmp_path, client, None)
    lose_next_create_answer(emulator)
    mine.submit()
    assert mine.ledger.shards[0].adopted
    assert owner(emulator, mine.batch_id) == "a"


def test_a_batch_claimed_while_the_search_runs_is_never_adopted(
    tmp_path: Path, emulator: RunningEmulator, client: Client, registry: Registry
) -> None:
    # Job a's create is dropped before the API handles it: it made nothing. While a's retry
    # searches, job b (the same size) creates its batch and claims it, between a's reading
    # of the claims and its reading of the open calls: b's call is then answered (not a
    # rival), and its batch was unclaimed in a's first read.
    other = Job("b", tmp_path, client, registry)

    class Racing(Registry):
        raced = False

        def claimed(self, since: Any = None, until: Any = None) -> set[str]:
            snapshot = super().claimed(since, until)
            if not Racing.raced:
                Racing.raced = True
                emulator.configure(faults={})
                other.submit()
            return snapshot

    mine = Job("a", tmp_path, client, Racing(registry.store.root))
    emulator.configure(faults={"create": {"rate_drop": 1.0, "max_count": 1}})
    mine.submit()
    assert Racing.raced
    assert not mine.ledger.shards[0].adopted
    assert owner(emulator, mine.batch_id) == "a"
    assert owner(emulator, other.batch_id) == "b"


class Died(BaseException):
    """The worker process dying inside a create call: nothing after the call runs."""


class DyingClient(Client):
    """A client whose process dies when its create call fails (its answer lost)."""

    def create_from_body(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().create_from_body(*args, **kwargs)
        except APIConnectionError:
            raise Died() from None


def test_a_dead_call_stays_a_rival_after_its_shard_got_another_batch(
    tmp_path: Path, emulator: RunningEmulator, client: Client, registry: Registry
) -> None:
    dying = DyingClient(
        api_key=emulator.api_key, base_url=emulator.base_url, max_retries=0, sleep=lambda s: None
    )
    # Job a's worker dies inside a create the API never handled: a made nothing.
    mine = Job("a", tmp_path, dying, registry)
    emulator.configure(faults={"create": {"rate_drop": 1.0, "max_count": 1}})
    with pytest.raises(Died):
        mine.submit()
    # Job b (the same size) dies inside a create that made batch B.
    other = Job("b", tmp_path, dying, registry)
    emulator.configure(faults={})
    lose_next_create_answer(emulator)
    with pytest.raises(Died):
        other.submit()
    [orphan_of_b] = [b["id"] for b in emulator.admin.batches()]
    # b's retry cannot tell B from a call of a's that was open then: it pays for a new
    # batch, and its shard has its batch. Its dead call may still have made B.
    other.client = client
    other.submit()
    assert other.batch_id != orphan_of_b
    # a's retry finds one unclaimed candidate of its size in its window, B: b's dead call is
    # still a rival for it, so a must not take it.
    mine.client = client
    mine.submit()
    assert mine.batch_id != orphan_of_b
    assert owner(emulator, mine.batch_id) == "a"
    assert owner(emulator, other.batch_id) == "b"
    assert orphan_of_b in {o.batch_id for o in registry.orphans()}
