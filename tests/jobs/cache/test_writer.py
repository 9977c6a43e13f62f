"""CacheWriter: a segment's lines are StoredLine's JSON, byte for byte, with keys records that
point at them; keys come from the job's keys.jsonl in any order of the results."""

from __future__ import annotations

import json
import random
from pathlib import Path

import msgspec

from airflow_batches.jobs.cache import CacheWriter
from airflow_batches.jobs.cache._layout import KEYS_RECORD, StoredLine, custom_id_hash


def test_the_segment_holds_stored_lines_and_their_keys(tmp_path: Path) -> None:
    keys = tmp_path / "keys.jsonl"
    ids = [f"m0_q{i}" for i in range(6)] + ['m1_q"é\\']
    key_of = {c: f"{i:032x}" for i, c in enumerate(ids)}
    keys.write_text("".join(json.dumps({"custom_id": c, "key": key_of[c]}) + "\n" for c in ids))
    writer = CacheWriter(tmp_path / "segments", keys)
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
            StoredLine(key_of[c], c, f"msgbatch_{order.index(c) % 2}", msgspec.Raw(results[c]))
        )
        + b"\n"
        for c in stored
    ]
    assert lines == expected
    records = data.with_suffix(".keys").read_bytes()
    offset = 0
    for n, custom_id in enumerate(stored):
        record = KEYS_RECORD.unpack_from(records, n * KEYS_RECORD.size)
        key = bytes.fromhex(key_of[custom_id])
        assert record == (key, custom_id_hash(custom_id), offset, len(lines[n]))
        offset += len(lines[n])


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
