"""CacheWriter: a segment's lines are StoredLine's JSON, byte for byte, with index records that
point at them; keys come from the job's keys.jsonl in any order of the results."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from airflow_batches.jobs.cache import CacheWriter
from airflow_batches.jobs.cache._layout import RECORD, StoredLine, custom_id_hash
from airflow_batches.jobs.cache._segments import all_segments, record_ranges

NOW = datetime(2026, 12, 6, 23, 0, tzinfo=UTC)


def test_the_segment_holds_stored_lines_and_their_keys(tmp_path: Path) -> None:
    keys = tmp_path / "keys.jsonl"
    ids = [f"m0_q{i}" for i in range(6)] + ['m1_q"é\\']
    key_of = {c: f"{i:032x}" for i, c in enumerate(ids)}
    keys.write_text("".join(json.dumps({"custom_id": c, "key": key_of[c]}) + "\n" for c in ids))
    writer = CacheWriter(tmp_path / "segments", keys, clock=lambda: NOW)
    results = {c: json.dumps({"type": "succeeded", "n": c}).encode() for c in ids}
    order = [ids[3], ids[0], ids[6], "not_a_miss", ids[5], ids[1]]  # results in any order
    for i, custom_id in enumerate(order):
        writer.add(custom_id, f"msgbatch_{i % 2}", results.get(custom_id, b"{}"))
    assert writer.commit() == 5
    (data,) = (tmp_path / "segments").glob("*.jsonl")
    lines = data.read_bytes().splitlines(keepends=True)
    stored = [c for c in order if c != "not_a_miss"]
    expected = [
        msgspec.json.encode(
            StoredLine(
                key=key_of[c],
                custom_id=c,
                batch_id=f"msgbatch_{order.index(c) % 2}",
                stored=int(NOW.timestamp()),
                result=msgspec.Raw(results[c]),
            )
        )
        + b"\n"
        for c in stored
    ]
    assert lines == expected
    (segment,) = all_segments(tmp_path / "segments")
    (blocks,) = record_ranges(tmp_path / "segments", segment, 1)
    records = sorted(RECORD.iter_unpack(b"".join(blocks)))
    expected_records = []
    offset = 0
    for n, custom_id in enumerate(stored):
        key = bytes.fromhex(key_of[custom_id])
        stamp = int(NOW.timestamp())
        expected_records.append((key, custom_id_hash(custom_id), offset, len(lines[n]), stamp))
        offset += len(lines[n])
    assert records == sorted(expected_records)


def test_lines_not_stored_let_their_keys_go(tmp_path: Path) -> None:
    keys = tmp_path / "keys.jsonl"
    ids = [f"q{i}" for i in range(200)]
    keys.write_text(
        "".join(json.dumps({"custom_id": c, "key": f"{i:032x}"}) + "\n" for i, c in enumerate(ids))
    )
    writer = CacheWriter(tmp_path / "segments", keys)
    writer.keys.max_entries = 30  # a batch of 20 answered in any order fits; 200 do not
    rng = random.Random(2)
    for start in range(0, 200, 20):
        batch = ids[start : start + 20]
        rng.shuffle(batch)
        for custom_id in batch:
            if int(custom_id[1:]) % 3:
                writer.add(custom_id, "msgbatch_1", b"{}")
            else:
                writer.skip(custom_id)  # errored, expired, too deep: not stored
    assert writer.keys.index is None and writer.keys.waiting == 0
    assert writer.commit() == sum(1 for c in ids if int(c[1:]) % 3)
