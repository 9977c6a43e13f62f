"""The cache's segments: which are live, their index records read a range of keys at a time,
and an index built in bounded memory (``_layout`` says what the files hold).

**Which segments are read.** The complete ones (data and index), less those a complete
compacted segment supersedes, less those whose every entry is older than the cache's
``max_age``; then, newest first, as many as fit ``max_bytes`` of data. A record older than
``max_age`` is skipped too (a compacted segment mixes ages). A segment that vanishes while it
is read (compacted away, after the grace period) is left out: its entries are misses.

**Reading by ranges of keys.** A lookup cuts the key space into ``ranges`` runs of buckets and
reads, for each, the records of that run from every live segment, in order, so each index is
read once, front to back, and only the job's keys of one run are held in memory.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO

from airflow_batches.jobs._store import StoragePath, atomic_writer, child, fresh
from airflow_batches.jobs.cache._layout import (
    BUCKETS,
    KEYS_RECORD,
    RECORD,
    IndexHead,
    bucket_bounds,
    segment_time,
)

__all__ = ["IndexBuilder", "Segment", "list_segments", "live_segments", "record_ranges"]

_CHUNK = 1 << 16
"""Records read at once (2.5 MiB)."""
_SPILLS = 16


@dataclass
class Segment:
    """A complete segment: its name, when it was written, its index's head (None for a
    ``.keys`` index, which has none)."""

    name: str
    written: datetime
    head: IndexHead | None
    data_bytes: int = 0


def list_segments(folder: StoragePath) -> tuple[list[str], list[str], set[str]]:
    """``(complete .idx segments, complete .keys segments, data files without an index)``,
    each newest first (names without extension)."""
    try:
        names = {p.name for p in fresh(folder).iterdir()}  # type: ignore[attr-defined]
    except (FileNotFoundError, NotADirectoryError):
        return [], [], set()
    data = {n[: -len(".jsonl")] for n in names if n.endswith(".jsonl") and not n.startswith(".")}
    idx = sorted((n for n in data if f"{n}.idx" in names), reverse=True)
    keys = sorted((n for n in data if f"{n}.keys" in names and n not in idx), reverse=True)
    return idx, keys, data - set(idx) - set(keys)


def read_head(folder: StoragePath, name: str) -> IndexHead | None:
    """The head of a segment's ``.idx``; None if it vanished."""
    try:
        with child(folder, f"{name}.idx").open("rb") as stream:
            return IndexHead.read(stream, name)
    except FileNotFoundError:
        return None


def all_segments(folder: StoragePath) -> list[Segment]:
    """Every complete segment, newest first, superseded ones included."""
    idx, keys, _ = list_segments(folder)
    out: list[Segment] = []
    for name in sorted([*idx, *keys], reverse=True):
        written = segment_time(name)
        if written is None:
            continue
        head = read_head(folder, name) if name in idx else None
        if name in idx and head is None:
            continue
        out.append(Segment(name, written, head, head.data_bytes if head else 0))
    return out


def superseded(segments: list[Segment]) -> set[str]:
    return {old for s in segments if s.head is not None for old in s.head.supersedes}


def live_segments(
    folder: StoragePath,
    now: datetime,
    max_age: timedelta | None,
    max_bytes: int | None,
    segments: list[Segment] | None = None,
) -> list[Segment]:
    """The segments a lookup reads, newest first (see the module docstring)."""
    segments = all_segments(folder) if segments is None else segments
    gone = superseded(segments)
    cutoff = (now - max_age).timestamp() if max_age is not None else None
    live: list[Segment] = []
    total = 0
    for segment in segments:
        if segment.name in gone:
            continue
        newest = segment.head.newest if segment.head else segment.written.timestamp()
        if cutoff is not None and newest < cutoff:
            continue
        if max_bytes is not None:
            if segment.head is None:
                segment.data_bytes = data_size(child(folder, f"{segment.name}.jsonl"))
            total += segment.data_bytes
            if total > max_bytes:
                break
        live.append(segment)
    return live


def data_size(path: StoragePath) -> int:
    """The size of a file (0 if it vanished)."""
    try:
        return int(getattr(path.stat(), "st_size", 0) or 0)  # type: ignore[attr-defined]
    except FileNotFoundError:
        return 0


def bucket_runs(ranges: int) -> list[tuple[int, int]]:
    """``ranges`` runs of buckets covering them all, in order."""
    step = BUCKETS // ranges
    return [(r * step, (r + 1) * step) for r in range(ranges)]


def record_ranges(folder: StoragePath, segment: Segment, ranges: int) -> Iterator[list[bytes]]:
    """For each run of :func:`bucket_runs`, the segment's index records of that run, in
    blocks of :data:`RECORD` records (a ``.keys`` index is sorted out first, in local
    temporary files). Yields nothing at all if the segment vanished."""
    if segment.head is not None:
        return _idx_ranges(folder, segment, ranges)
    return _keys_ranges(folder, segment, ranges)


def _idx_ranges(folder: StoragePath, segment: Segment, ranges: int) -> Iterator[list[bytes]]:
    assert segment.head is not None
    try:
        stream = child(folder, f"{segment.name}.idx").open("rb")
    except FileNotFoundError:
        return
    with stream:
        bounds = IndexHead.read(stream, segment.name).bounds
        for low, high in bucket_runs(ranges):
            left = (bounds[high] - bounds[low]) * RECORD.size
            blocks: list[bytes] = []
            while left > 0:
                data = stream.read(min(left, _CHUNK * RECORD.size))
                if not data:
                    raise ValueError(f"cache segment {segment.name}.idx is cut short")
                blocks.append(data)
                left -= len(data)
            yield blocks


def _keys_ranges(folder: StoragePath, segment: Segment, ranges: int) -> Iterator[list[bytes]]:
    stored = int(segment.written.timestamp())
    runs = bucket_runs(ranges)
    per_run = BUCKETS // ranges
    with ExitStack() as stack:
        spills = [stack.enter_context(_temporary()) for _ in runs]
        try:
            stream = stack.enter_context(child(folder, f"{segment.name}.keys").open("rb"))
        except FileNotFoundError:
            return
        while chunk := stream.read(KEYS_RECORD.size * _CHUNK):
            for key, id_hash, offset, length in KEYS_RECORD.iter_unpack(chunk):
                spills[key[0] // per_run].write(RECORD.pack(key, id_hash, offset, length, stored))
        for spill in spills:
            spill.seek(0)
            yield [spill.read()]


def _chunks(spill: IO[bytes]) -> Iterator[bytes]:
    """A spill file's records from its start, :data:`_CHUNK` records a read."""
    spill.seek(0)
    while chunk := spill.read(RECORD.size * _CHUNK):
        yield chunk


def _temporary() -> IO[bytes]:
    return tempfile.TemporaryFile(prefix="airflow-batches-cache-")


class IndexBuilder:
    """Index records gathered in local temporary files (one per sixteenth of the key space),
    then written as an ``.idx``, sorted by key, a 256th of the key space at a time: memory
    holds one sixteenth of the records as bytes, and a 256th of them as objects to sort."""

    def __init__(self) -> None:
        self._stack = ExitStack()
        self._spills = [self._stack.enter_context(_temporary()) for _ in range(_SPILLS)]
        self.count = 0
        self.oldest = 1 << 62
        self.newest = 0

    def add(self, key: bytes, id_hash: bytes, offset: int, length: int, stored: int) -> None:
        self._spills[key[0] >> 4].write(RECORD.pack(key, id_hash, offset, length, stored))
        self.count += 1
        if stored < self.oldest:
            self.oldest = stored
        if stored > self.newest:
            self.newest = stored

    def write(self, target: StoragePath, data_bytes: int, supersedes: list[str]) -> None:
        """Write the index to ``target`` (atomically), then drop the temporary files."""
        size = RECORD.size
        try:
            counts: Counter[int] = Counter()
            for spill in self._spills:
                for chunk in _chunks(spill):
                    counts.update(chunk[::size])  # each record's first key byte
            head = IndexHead(
                self.count,
                data_bytes,
                self.oldest if self.count else 0,
                self.newest,
                supersedes,
                bucket_bounds([counts[b] for b in range(BUCKETS)]),
            )
            with atomic_writer(target) as out:
                out.write(head.encode())
                for spill in self._spills:
                    # The sixteenth's records by their first key byte (the spill holds 16 of
                    # its values), each run then sorted on its own.
                    per_spill = BUCKETS // _SPILLS
                    runs = [bytearray() for _ in range(per_spill)]
                    for chunk in _chunks(spill):
                        for at in range(0, len(chunk), size):
                            runs[chunk[at] % per_spill] += chunk[at : at + size]
                    for run in runs:
                        data = bytes(run)
                        run.clear()
                        records = [data[at : at + size] for at in range(0, len(data), size)]
                        records.sort()
                        out.write(b"".join(records))
        finally:
            self.close()

    def close(self) -> None:
        with suppress(OSError):
            self._stack.close()
