"""The cache's bounds and its compaction: expired entries are misses and go, small segments are
merged, and nothing a concurrent run reads or writes is lost (an injected clock throughout)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from airflow_batches.jobs._store import JobStore
from airflow_batches.jobs.cache import CrossRunCache, endpoint_identity, request_cache_key
from airflow_batches.jobs.cache._compact import Bounds, compact
from airflow_batches.jobs.cache._layout import (
    CACHED_FILE,
    KEYS_RECORD,
    PLAN_FILE,
    StoredLine,
    custom_id_hash,
)
from airflow_batches.jobs.cache._plan import Lookup
from airflow_batches.jobs.cache._segments import all_segments, live_segments
from airflow_batches.jobs.prepare import (
    REQUESTS_FILE,
    Limits,
    RequestValidator,
    records_from_items,
    stage_requests,
)

EMULATOR = endpoint_identity("http://127.0.0.1:8089")
VALIDATOR = RequestValidator(anthropic_version="2023-06-01", defaults={"max_tokens": 8})
START = datetime(2026, 12, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


class Log:
    def info(self, message: str, *args: Any) -> None:
        pass

    warning = info


def request(custom_id: str, text: str) -> dict[str, Any]:
    params = {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": text}]}
    return {"custom_id": custom_id, "params": params}


def stage(root: Path, pairs: list[tuple[str, str]]) -> JobStore:
    items = [request(c, t) for c, t in pairs]
    job, _ = stage_requests(JobStore(root), records_from_items(items), VALIDATOR)
    return job


def cache(tmp_path: Path, clock: Clock, **bounds: Any) -> CrossRunCache:
    return CrossRunCache(
        tmp_path / "cache", endpoint=EMULATOR, anthropic_version="2023-06-01", clock=clock, **bounds
    )


def night(tmp_path: Path, store: CrossRunCache, name: str, pairs: list[tuple[str, str]]) -> Any:
    """A job looked up, then every miss answered and stored (as a fetch does)."""
    job = stage(tmp_path / name, pairs)
    info = store.plan(job, REQUESTS_FILE, Log())
    writer = store.writer(job, info)
    for custom_id, text in pairs:
        writer.add(
            custom_id, "msgbatch_1", json.dumps({"type": "succeeded", "text": text}).encode()
        )
    writer.commit()
    return info


def hits(tmp_path: Path, store: CrossRunCache, name: str, pairs: list[tuple[str, str]]) -> set[str]:
    job = stage(tmp_path / name, pairs)
    store.plan(job, REQUESTS_FILE, Log())
    return {json.loads(x)["custom_id"] for x in job.path(CACHED_FILE).read_bytes().splitlines()}


def files(tmp_path: Path) -> set[str]:
    return {p.name for p in (tmp_path / "cache" / "v2").iterdir()}


def test_entries_older_than_max_age_are_misses_and_compacted_away(tmp_path: Path) -> None:
    clock = Clock()
    store = cache(tmp_path, clock, max_age=timedelta(days=7))
    night(tmp_path, store, "n1", [("a", "x")])
    clock.now += timedelta(days=5)
    night(tmp_path, store, "n2", [("b", "y")])
    old, new = sorted(s.name for s in all_segments(store.folder))
    assert hits(tmp_path, store, "q1", [("a", "x"), ("b", "y")]) == {"a", "b"}

    clock.now += timedelta(days=3)  # "a" is 8 days old: a miss, even before any compaction
    assert hits(tmp_path, store, "q2", [("a", "x"), ("b", "y")]) == {"b"}
    assert store.segments() == [new]

    # The next fetch's commit compacts: "a"'s segment is replaced by nothing...
    night(tmp_path, store, "n3", [("c", "z")])
    replaced = [s for s in all_segments(store.folder) if s.head and s.head.supersedes]
    assert [s.head.supersedes for s in replaced if s.head] == [[old]]
    assert f"{old}.jsonl" in files(tmp_path)  # ...but stays for the grace period
    clock.now += Bounds().grace
    night(tmp_path, store, "n4", [("d", "w")])
    assert not {f for f in files(tmp_path) if f.startswith(old)}
    assert hits(tmp_path, store, "q3", [("b", "y"), ("c", "z"), ("d", "w")]) == {"b", "c", "d"}


def test_a_size_bound_keeps_the_newest_segments(tmp_path: Path) -> None:
    clock = Clock()
    store = cache(tmp_path, clock)
    night(tmp_path, store, "n1", [("a", "x" * 500)])
    clock.now += timedelta(hours=1)
    night(tmp_path, store, "n2", [("b", "y" * 500)])
    size = max(s.data_bytes for s in all_segments(store.folder))
    bounded = cache(tmp_path, clock, max_bytes=size + 10)
    assert hits(tmp_path, bounded, "q", [("a", "x" * 500), ("b", "y" * 500)]) == {"b"}


def test_many_segments_are_merged_and_every_entry_still_found(tmp_path: Path) -> None:
    clock = Clock()
    store = cache(tmp_path, clock)
    pairs = [(f"q{i}", f"text {i}") for i in range(12)]
    for i, pair in enumerate(pairs):
        clock.now += timedelta(minutes=1)
        night(tmp_path, store, f"n{i}", [pair])
    live = live_segments(store.folder, clock(), None, None)
    assert len(live) <= Bounds().max_segments
    assert sum(s.head.entries for s in live if s.head) == 12
    assert hits(tmp_path, store, "all", pairs) == {c for c, _ in pairs}
    before = len(files(tmp_path))
    clock.now += Bounds().grace + timedelta(minutes=1)
    compact(store.folder, Bounds(), clock())
    assert len(files(tmp_path)) < before  # what was merged is deleted, once the grace is over
    assert hits(tmp_path, store, "again", pairs) == {c for c, _ in pairs}


def test_a_writer_that_commits_during_a_compaction_loses_nothing(tmp_path: Path) -> None:
    clock = Clock()
    store = cache(tmp_path, clock, max_age=timedelta(days=1))
    night(tmp_path, store, "old", [("a", "x")])
    clock.now += timedelta(days=2)
    late = stage(tmp_path / "late", [("b", "y")])
    writer = store.writer(late, store.plan(late, REQUESTS_FILE, Log()))
    writer.add("b", "msgbatch_2", b'{"type":"succeeded"}')
    done = compact(store.folder, store.bounds, clock())  # the expired segment: not this one
    assert done.replaced and len(done.replaced) == 1
    writer.commit()
    assert hits(tmp_path, store, "q", [("b", "y"), ("a", "x")]) == {"b"}


def test_a_segment_gone_while_a_lookup_reads_is_a_miss(tmp_path: Path) -> None:
    clock = Clock()
    store = cache(tmp_path, clock)
    night(tmp_path, store, "n1", [("a", "x")])
    segments = live_segments(store.folder, clock(), None, None)
    for path in (tmp_path / "cache" / "v2").iterdir():
        path.unlink()  # compacted away after the listing
    job = stage(tmp_path / "q", [("a", "x")])
    lookup = Lookup(
        key=store.key,
        identity=b"bench",
        folder=store.folder,
        segments=segments,
        cutoff=None,
        job=job,
        requests_file=REQUESTS_FILE,
        request_count=1,
        part_of=None,
        limits=Limits(),
        observers=(),
    )
    sent = lookup.run()
    assert (lookup.hits, lookup.misses) == (0, 1)
    assert sent is not None and sent.request_count == 1


def test_segments_of_the_release_before_are_still_read(tmp_path: Path) -> None:
    """``.keys`` segments (no index head, no time in the lines) keep answering."""
    clock = Clock()
    store = cache(tmp_path, clock)
    job = stage(tmp_path / "n1", [("a", "x"), ("b", "y")])
    keys = {}  # as the release before computed them: from the params' bytes
    for line in job.path(REQUESTS_FILE).read_bytes().splitlines():
        value = json.loads(line)
        params = json.dumps(value["params"]).encode()
        keys[value["custom_id"]] = request_cache_key(
            params, endpoint=EMULATOR, anthropic_version="2023-06-01", betas=()
        )
    folder = tmp_path / "cache" / "v2"
    folder.mkdir(parents=True)
    data, index = b"", b""
    for custom_id, key in keys.items():
        line = msgspec.json.encode(
            {"key": key.hex(), "custom_id": custom_id, "batch_id": "msgbatch_0", "result": {"t": 1}}
        )
        index += KEYS_RECORD.pack(key, custom_id_hash(custom_id), len(data), len(line) + 1)
        data += line + b"\n"
    name = "20261130T000000000000-abcdef01"
    (folder / f"{name}.jsonl").write_bytes(data)
    (folder / f"{name}.keys").write_bytes(index)
    assert store.segments() == [name]
    assert hits(tmp_path, store, "q", [("b", "y"), ("a", "x"), ("c", "z")]) == {"a", "b"}
    cached = (tmp_path / "q").rglob("cached.jsonl")
    line = json.loads(next(cached).read_bytes().splitlines()[0])
    assert line["cached_from"]["batch_id"] == "msgbatch_0" and line["result"] == {"t": 1}
    StoredLine  # the layout this test writes by hand  # noqa: B018


def test_a_lookup_in_many_ranges_and_segments(tmp_path: Path) -> None:
    clock = Clock()
    store = cache(tmp_path, clock)
    pairs = [(f"r{i}", f"text {i}") for i in range(60)]
    for i in range(3):
        clock.now += timedelta(minutes=1)
        night(tmp_path, store, f"n{i}", pairs[i * 20 : (i + 1) * 20])
    job = stage(tmp_path / "q", [*pairs, ("new", "nothing")])
    lookup = Lookup(
        key=store.key,
        identity=b"bench",
        folder=store.folder,
        segments=live_segments(store.folder, clock(), None, None),
        cutoff=None,
        job=job,
        requests_file=REQUESTS_FILE,
        request_count=1 << 22,  # as if the job were huge: 128 ranges of keys
        part_of=None,
        limits=Limits(),
        observers=(),
    )
    assert lookup.ranges == 128
    lookup.run()
    assert (lookup.hits, lookup.misses) == (60, 1)
    cached = [json.loads(x) for x in job.path(CACHED_FILE).read_bytes().splitlines()]
    assert sorted(c["custom_id"] for c in cached) == sorted(c for c, _ in pairs)
    assert all(c["result"]["text"] == dict(pairs)[c["custom_id"]] for c in cached)
    assert not job.path(PLAN_FILE).exists()  # a Lookup alone writes no plan
