"""IndexBuilder: an ``.idx`` holds every record added, sorted by key, with each bucket's bounds
right, whatever the order they were added in."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

from airflow_batches.jobs.cache._layout import BUCKETS, RECORD, IndexHead
from airflow_batches.jobs.cache._segments import IndexBuilder, Segment, record_ranges


def test_the_index_is_every_record_sorted_by_key(tmp_path: Path, random_seed: int) -> None:
    rng = random.Random(random_seed)
    builder = IndexBuilder()
    added = []
    for n in range(20_000):
        key = rng.randbytes(16)
        if n % 1000 == 0:
            key = bytes([n % 256]) + key[1:]  # every first byte, some twice
        record = (key, rng.randbytes(8), n * 100, 100, 1_700_000_000 + n % 7)
        builder.add(*record)
        added.append(record)
    builder.write(tmp_path / "seg.idx", 2_000_000, [])

    with (tmp_path / "seg.idx").open("rb") as stream:
        head = IndexHead.read(stream, "seg")
        body = stream.read()
    records = list(RECORD.iter_unpack(body))
    assert records == sorted(added)
    assert head.entries == len(added)
    assert (head.oldest, head.newest) == (1_700_000_000, 1_700_000_006)
    for bucket in range(BUCKETS):
        inside = records[head.bounds[bucket] : head.bounds[bucket + 1]]
        assert all(r[0][0] == bucket for r in inside)
        assert len(inside) == sum(1 for r in added if r[0][0] == bucket)

    segment = Segment("seg", datetime(2026, 12, 6, tzinfo=UTC), head, 2_000_000)
    ranges = [
        RECORD.iter_unpack(b"".join(blocks)) for blocks in record_ranges(tmp_path, segment, 4)
    ]
    assert [r for run in ranges for r in run] == records
