"""The compact custom_id table of a batch being read (``_ids.SeenLines``)."""

from __future__ import annotations

import random
import zlib

from airflow_batches.jobs._ids import SeenLines, id_hash
from airflow_batches.jobs.results._download import line_key


def test_first_lines_are_new_and_a_second_line_returns_the_first_ones_key() -> None:
    seen = SeenLines(3)
    first, other = line_key(b'{"custom_id":"a","x":1}'), line_key(b'{"custom_id":"a","x":2}')
    assert seen.put(id_hash("a"), first) == 0
    assert seen.put(id_hash("b"), line_key(b"b")) == 0
    assert seen.put(id_hash("a"), other) == first  # the first line's key is kept
    assert seen.put(id_hash("a"), first) == first
    assert len(seen) == 2


def test_many_more_ids_than_expected_grow_the_table_and_lose_none() -> None:
    rng = random.Random(7)
    ids = [f"req-{i}" for i in range(5_000)]
    keys = {custom_id: rng.getrandbits(63) | 1 for custom_id in ids}
    seen = SeenLines(10)  # sized for 10: it doubles many times
    for custom_id in ids:
        assert seen.put(id_hash(custom_id), keys[custom_id]) == 0
    assert len(seen) == len(ids)
    rng.shuffle(ids)
    for custom_id in ids:
        assert seen.put(id_hash(custom_id), 12345) == keys[custom_id]
    assert len(seen) == len(ids)


def test_hashes_that_share_their_low_bits_are_told_apart() -> None:
    seen = SeenLines(4)  # 16 slots: these all start at slot 5
    values = [5 + (n << 40) for n in range(1, 9)]
    for n, value in enumerate(values, start=1):
        assert seen.put(value, n) == 0
    for n, value in enumerate(values, start=1):
        assert seen.put(value, 99) == n
    assert seen.put(0, 7) == 0  # a hash of 0 takes the slot of 1, not the free mark
    assert seen.put(1, 8) == 7


def test_line_keys_tell_lines_apart_even_where_a_crc_would_not() -> None:
    # Two different lines of one length and one CRC-32 (found by a seeded birthday search):
    # a server could forge such a pair against a CRC; the keyed hash gives them two keys.
    rng = random.Random(31)
    by_crc: dict[int, bytes] = {}
    while True:
        line = b'{"custom_id":"a","x":"' + rng.randbytes(6).hex().encode() + b'"}'
        other = by_crc.setdefault(zlib.crc32(line), line)
        if other != line:
            break
    assert len(other) == len(line) and zlib.crc32(other) == zlib.crc32(line)
    assert line_key(other) != line_key(line)
    assert line_key(bytes(bytearray(line))) == line_key(line)  # equal bytes, another object
    assert all(line_key(x) for x in (b"", b"a", line))  # never 0 (0 is SeenLines' "none")
