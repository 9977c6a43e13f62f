"""The hits of a lookup, read back in the order of their segment's data: by offset, in runs of
at most ``_SORTED`` when there are more, every hit once; a stored line hit twice keeps the
lookup's order. (What the copies become: ``test_cache``; on S3: ``test_cache_on_s3``.)"""

from __future__ import annotations

import io
import random

import pytest

from airflow_batches.jobs.cache import _hits
from airflow_batches.jobs.cache._hits import HIT


def _hits_file(records: list[tuple[int, int, bytes]]) -> io.BytesIO:
    return io.BytesIO(b"".join(HIT.pack(*r) for r in records))  # read from its start


def _records(count: int, seed: int) -> list[tuple[int, int, bytes]]:
    rng = random.Random(seed)
    lines = [(n * 600 + rng.randrange(50), 100 + rng.randrange(400)) for n in range(count)]
    # Some stored lines answer two requests of the job (two custom_ids, one body).
    asked = [(o, length, b"q%06d" % n) for n, (o, length) in enumerate(lines)]
    asked += [(o, length, b"twin-%06d" % n) for n, (o, length) in enumerate(lines) if n % 7 == 0]
    rng.shuffle(asked)
    return asked


def _padded(record: tuple[int, int, bytes]) -> tuple[int, int, bytes]:
    return record[0], record[1], record[2].ljust(64, b"\0")


@pytest.mark.parametrize("sorted_at_most", [10_000, 40, 7])
def test_the_hits_come_back_by_offset_each_once(
    sorted_at_most: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_hits, "_SORTED", sorted_at_most)
    records = _records(500, seed=sorted_at_most)
    found = _hits_file(records)
    span = max(o + length for o, length, _ in records)
    runs = list(_hits._in_order(found, len(records), span))

    if len(records) <= sorted_at_most:
        assert len(runs) == 1
    else:  # cut by offset, so each run stays about the bound (the offsets are even here)
        assert len(runs) == len(records) // sorted_at_most + 1
        assert max(len(run) for run in runs) <= 2 * sorted_at_most
    read = [hit for run in runs for hit in run]
    assert [o for o, _, _ in read] == sorted(o for o, _, _ in records)  # across the runs too
    assert sorted(read) == sorted(_padded(r) for r in records)  # every hit, once
    # A line hit twice: its two custom_ids in the order the lookup wrote them.
    first = {o: cid for o, _, cid in reversed(records)}
    for at, (offset, _, cid) in enumerate(read):
        if at and read[at - 1][0] == offset:
            assert read[at - 1][2] == first[offset].ljust(64, b"\0") != cid


def test_no_hits_is_one_empty_run() -> None:
    assert list(_hits._in_order(_hits_file([]), 0, 0)) == [[]]
