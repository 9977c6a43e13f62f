"""DiskIndex: a bounded-memory str -> bytes map on local disk."""

from __future__ import annotations

from airflow_batches.jobs._index import DiskIndex


def test_first_value_wins_lookups_and_ordered_walk() -> None:
    with DiskIndex() as index:
        index.update((f"k{i:05d}", str(i).encode()) for i in range(12_000))
        index.put("k00007", b"later")
        assert index.get("k00007") == b"7"
        assert index.get("absent") is None
        assert "k11999" in index and "absent" not in index
        assert len(index) == 12_000
        keys = [k for k, _ in index.items()]
        assert keys == sorted(keys) and len(keys) == 12_000
        path = index.path
        assert path.exists()
    assert not path.exists()  # the file goes with the index
