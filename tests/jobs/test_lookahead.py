"""Lookahead: the answers of a DiskIndex, from a dict while keys come in about the file's order."""

from __future__ import annotations

import random
from collections.abc import Iterator

from airflow_batches.jobs._lookahead import Lookahead


class Source:
    """Entries ``k0 -> v0`` ... in order, counting how often the file is opened."""

    def __init__(self, n: int, *, skip: frozenset[int] = frozenset()) -> None:
        self.n, self.skip, self.opened = n, skip, 0

    def __call__(self) -> Iterator[tuple[str, bytes]]:
        self.opened += 1
        for i in range(self.n):
            if i not in self.skip:
                yield f"k{i}", f"v{i}".encode()


def test_keys_in_batches_of_any_order_come_from_the_dict() -> None:
    source = Source(1000)
    order = list(range(1000))
    rng = random.Random(7)
    batches = [order[i : i + 100] for i in range(0, 1000, 100)]
    for batch in batches:
        rng.shuffle(batch)
    with Lookahead(source, max_entries=150) as lookup:
        got = {i: lookup.take(f"k{i}") for batch in batches for i in batch}
        assert lookup.index is None and lookup.waiting == 0
    assert got == {i: f"v{i}".encode() for i in range(1000)}
    assert source.opened == 1


def test_an_absent_key_is_none_once_the_file_is_read() -> None:
    source = Source(10, skip=frozenset({3}))
    lookup = Lookahead(source)
    assert lookup.take("k3") is None
    assert lookup.waiting == 9 and lookup.index is None
    assert [lookup.take(f"k{i}") for i in (9, 0)] == [b"v9", b"v0"]
    assert lookup.take("k3") is None and lookup.take("nope") is None
    assert source.opened == 1


def test_past_its_bounds_the_entries_waiting_go_to_a_disk_index() -> None:
    source = Source(1000)
    with Lookahead(source, max_entries=50) as lookup:
        assert lookup.take("k999") == b"v999"  # 999 entries would wait: past the bound
        assert lookup.index is not None and lookup.spills == 19 and lookup.waiting < 51
        keys = [f"k{i}" for i in range(999)]
        random.Random(3).shuffle(keys)
        assert all(lookup.take(k) == k.replace("k", "v").encode() for k in keys)
        assert lookup.take("k1000") is None
        assert source.opened == 1  # the file is read once, whatever the order
    assert lookup.index is None  # closed


def test_a_batch_read_after_a_spill_comes_from_the_dict_again() -> None:
    # The requests the cache answered (every other one here) wait, and go to disk; the
    # batch being read stays in memory, and the waiting ones are found on disk at the end.
    source = Source(2000)
    lookup = Lookahead(source, max_entries=100)
    misses = [i for i in range(2000) if i % 2]
    rng = random.Random(9)
    for start in range(0, len(misses), 40):
        batch = misses[start : start + 40]
        rng.shuffle(batch)
        assert [lookup.take(f"k{i}") for i in batch] == [f"v{i}".encode() for i in batch]
    assert lookup.spills > 0 and lookup.waiting < 101
    hits = [i for i in range(2000) if not i % 2]
    assert [lookup.take(f"k{i}") for i in hits] == [f"v{i}".encode() for i in hits]
    lookup.close()


def test_the_bound_on_bytes_counts_too() -> None:
    source = Source(100)
    lookup = Lookahead(source, max_bytes=40)
    assert lookup.take("k99") == b"v99"
    assert lookup.index is not None and lookup.spills > 0
    lookup.close()


def test_the_first_entry_of_a_key_wins() -> None:
    def entries() -> Iterator[tuple[str, bytes]]:
        yield from [("a", b"1"), ("b", b"2"), ("a", b"3")]

    lookup = Lookahead(entries)
    assert lookup.take("b") == b"2"
    assert lookup.take("a") == b"1"
