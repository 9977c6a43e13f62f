"""The registry files each entry under its day and reads only the days a question is about.

A deployment that has run nightly for a year holds tens of thousands of claims and intents.
The failure path (a lost create answer: ``find_orphan``) and ``settle`` (after every
submission, while a possible orphan is unsettled) used to read every one of them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_batches.api import Client
from airflow_batches.jobs.submit import Registry
from airflow_batches.jobs.submit._registry import (
    LONGEST_WINDOW,
    Claim,
    Intent,
    Orphan,
    Window,
    days_between,
    new_token,
    token_day,
)
from airflow_batches.jobs.submit._windows import call_timeout

NOW = datetime(2026, 12, 2, 0, 0, 30, tzinfo=UTC)  # just past midnight: windows cross days


class Counting(Registry):
    """Counts the entries read (each one an object GET on S3)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads = 0
        read = self.store.read_json

        def counted(*parts: str) -> Any:
            self.reads += 1
            return read(*parts)

        self.store.read_json = counted  # type: ignore[method-assign]


def intent(job: str, opened: datetime, *, size: int = 12, batch_id: str | None = None) -> Intent:
    window = Window(token=new_token(opened), opened=opened, until=opened + timedelta(minutes=10))
    return Intent(job_id=job, shard=0, request_count=size, window=window, batch_id=batch_id)


def claim(batch_id: str, created: datetime) -> Claim:
    return Claim(batch_id=batch_id, job_id="old", shard=0, created_at=created)


def a_year_of_history(registry: Registry, nights: int = 365) -> None:
    for night in range(1, nights + 1):
        when = NOW - timedelta(days=night, hours=-2)
        registry.open(intent(f"night{night}", when, batch_id=f"msgbatch_{night}"))
        registry.claim(claim(f"msgbatch_{night}", when))


def test_tokens_carry_their_day_and_entries_are_filed_under_it(tmp_path: Path) -> None:
    token = new_token(datetime(2026, 12, 1, 23, 59, 59, tzinfo=UTC))
    assert token.startswith("20261201-") and token_day(token) == date(2026, 12, 1)
    assert token_day(uuid.uuid4().hex) is None  # a token of the older form
    assert token_day("20261399-" + "0" * 32) is None  # not a date

    registry = Registry(tmp_path)
    one = intent("a", NOW)
    registry.open(one)
    registry.claim(claim("msgbatch_x", NOW - timedelta(minutes=5)))
    assert (tmp_path / "intents" / "2026-12-02" / f"{one.window.token}.json").exists()
    assert (tmp_path / "claims" / "2026-12-01" / "msgbatch_x.json").exists()
    assert registry.intent(one.window.token) == one


def test_entries_of_the_older_flat_layout_are_still_read(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    legacy = uuid.uuid4().hex
    old = Intent(
        job_id="b",
        shard=0,
        request_count=12,
        window=Window(token=legacy, opened=NOW, until=NOW + timedelta(minutes=10)),
    )
    registry.open(old)  # a bare uuid: written where the older release wrote it
    assert (tmp_path / "intents" / f"{legacy}.json").exists()
    registry.store.write_json(
        Claim(batch_id="msgbatch_flat", job_id="b", shard=0).model_dump(mode="json"),
        "claims",
        "msgbatch_flat.json",
    )
    assert registry.intent(legacy) == old
    assert [i.job_id for i in registry.rivals("a", 0, 12, NOW + timedelta(seconds=5))] == ["b"]
    assert "msgbatch_flat" in registry.claimed(since=NOW)
    assert registry.is_claimed("msgbatch_flat", NOW)


def test_claims_are_read_for_the_days_asked_only(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.claim(claim("msgbatch_lastweek", NOW - timedelta(days=7)))
    registry.claim(claim("msgbatch_yesterday", NOW - timedelta(minutes=1)))
    registry.claim(claim("msgbatch_today", NOW))
    assert registry.claimed(since=NOW - timedelta(minutes=2), until=NOW) == {
        "msgbatch_yesterday",
        "msgbatch_today",
    }
    assert registry.claimed() == {"msgbatch_lastweek", "msgbatch_yesterday", "msgbatch_today"}
    assert registry.is_claimed("msgbatch_lastweek", NOW - timedelta(days=7))
    assert not registry.is_claimed("msgbatch_lastweek", NOW)  # looked for on the wrong day


def test_a_call_opened_before_midnight_is_a_rival_of_a_batch_made_after(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.open(intent("b", NOW - timedelta(minutes=3)))  # opened on the 1st, still open
    registry.open(intent("c", NOW - timedelta(days=3)))  # long closed
    rivals = registry.rivals("a", 0, 12, NOW)
    assert [i.job_id for i in rivals] == ["b"]


def test_a_year_of_history_is_not_read_by_the_failure_path(tmp_path: Path) -> None:
    registry = Counting(tmp_path)
    a_year_of_history(registry)
    registry.open(intent("b", NOW - timedelta(minutes=1)))  # tonight's rival
    registry.reads = 0

    since = NOW - timedelta(minutes=2)
    assert registry.claimed(since=since, until=NOW) == {"msgbatch_1"}  # last night's: same day
    assert [i.job_id for i in registry.rivals("a", 0, 12, NOW)] == ["b"]
    assert registry.reads <= 4  # tonight's and last night's entries, not 730

    registry.reads = 0
    assert len(registry.claimed()) == 365  # the counter counts: all of it, when asked
    assert registry.reads == 365


def test_settle_reads_neither_old_orphans_nor_old_history(tmp_path: Path) -> None:
    registry = Counting(tmp_path)
    a_year_of_history(registry)
    for night in range(3, 60):  # possible orphans never settled: their makers never resumed
        created = NOW - timedelta(days=night)
        orphan = Orphan(batch_id=f"msgbatch_o{night}", created_at=created, request_count=12,
                        noted_by="x")  # fmt: skip
        registry.store.write_json(
            orphan.model_dump(mode="json"), "orphans", created.date().isoformat(),
            f"{orphan.batch_id}.json",
        )  # fmt: skip
    registry.reads = 0

    class NoCalls(Client):
        def __init__(self) -> None:
            pass

        def __getattribute__(self, name: str) -> Any:
            raise AssertionError(f"settle called the API ({name}) for an expired orphan")

    assert registry.settle(NoCalls(), NOW) == []
    assert registry.reads == 0


def test_a_recent_orphan_is_settled_once_and_claimed_ones_are_dropped(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    created = NOW - timedelta(hours=1)
    registry.claim(Claim(batch_id="msgbatch_mine", job_id="a", shard=0, created_at=created))
    fake = Orphan(batch_id="msgbatch_mine", created_at=created, request_count=12, noted_by="b")
    registry.store.write_json(fake.model_dump(mode="json"), "orphans", "msgbatch_mine.json")
    assert registry.settle(Client.__new__(Client), NOW) == []  # claimed: no API call needed
    [settled] = registry.orphans(since=NOW - timedelta(days=1))
    assert settled.settled == "claimed"  # the day-filed record stands for the flat one
    assert (tmp_path / "orphans" / "2026-12-01" / "msgbatch_mine.json").exists()


@pytest.mark.parametrize("read", [30.0, None, 10 * 86400.0])
def test_a_create_window_is_never_longer_than_the_registry_reads(read: float | None) -> None:
    timeout = httpx.Timeout(10.0, read=read)
    client = Client(api_key="k", base_url="http://127.0.0.1:9", timeout=timeout)
    try:
        assert timedelta(0) < call_timeout(client) <= LONGEST_WINDOW
    finally:
        client.close()


def test_days_between_counts_both_ends() -> None:
    assert days_between(NOW - timedelta(minutes=1), NOW) == [date(2026, 12, 1), date(2026, 12, 2)]
    assert days_between(NOW, NOW) == [date(2026, 12, 2)]
