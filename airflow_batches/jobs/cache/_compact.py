"""Compacting the cross-run cache: expired entries dropped, small segments merged, without
locks and without losing a concurrent run's writes.

A compaction never changes a file. It writes a new segment (data, then index: the index makes
it visible) holding the live entries of the segments it replaces, and names them in its
index's head (``supersedes``): from then on readers skip those. They are deleted only once
the new segment is ``grace`` old, so a lookup that listed the folder before it appeared still
finds every file it reads, and one that finds a file gone treats its entries as misses. A
segment a writer commits meanwhile is not among those replaced: nothing is lost. Two
compactions at once merely both keep the same entries, once each, until a later one merges
their segments.

**When** (after a fetch stored a segment, ``CacheWriter.commit``): a segment whose every
entry is past the cache's bounds (older than ``max_age``, or beyond ``max_bytes`` counting
from the newest) is replaced by nothing; when more than ``max_segments`` remain, the smallest
are merged into one (at least two at a time), so each entry is rewritten a few times over its
life, not once a night. Data files left without an index (a writer that died) are deleted
once ``grace`` old.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO

import msgspec

from airflow_batches.jobs._store import StoragePath, atomic_writer, child, open_to_read
from airflow_batches.jobs.cache._layout import StoredLine, custom_id_hash, segment_name
from airflow_batches.jobs.cache._segments import (
    IndexBuilder,
    Segment,
    all_segments,
    list_segments,
    live_segments,
    superseded,
)

__all__ = ["Bounds", "Compaction", "compact"]

_decode_stored = msgspec.json.Decoder(StoredLine).decode
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class Bounds:
    """What the cache keeps, and how it is tidied (see the module docstring)."""

    max_age: timedelta | None = None
    max_bytes: int | None = None
    grace: timedelta = timedelta(hours=6)
    max_segments: int = 8

    def __post_init__(self) -> None:
        if self.max_age is not None and self.max_age <= timedelta(0):
            raise ValueError(f"cache_max_age must be positive, got {self.max_age}")
        if self.max_bytes is not None and self.max_bytes <= 0:
            raise ValueError(f"cache_max_bytes must be positive, got {self.max_bytes}")
        if self.max_segments < 2:
            raise ValueError("a cache keeps at least 2 segments between compactions")


@dataclass
class Compaction:
    """What one compaction did."""

    written: str | None = None
    replaced: list[str] | None = None
    kept: int = 0
    deleted: list[str] | None = None


def compact(folder: StoragePath, bounds: Bounds, now: datetime) -> Compaction:
    """Compact the cache folder if it is due (see the module docstring)."""
    done = Compaction(deleted=_delete_replaced(folder, bounds, now))
    segments = all_segments(folder)
    gone = superseded(segments)
    # A segment of no entries only says what it replaced: it is deleted with them.
    current = [s for s in segments if s.name not in gone and (s.head is None or s.head.entries)]
    live = live_segments(folder, now, bounds.max_age, bounds.max_bytes, current)
    dead = [s for s in current if s not in live]
    merged: list[Segment] = []
    if len(live) > bounds.max_segments:
        by_size = sorted(live, key=lambda s: (s.head.entries if s.head else 0, s.name))
        merged = by_size[: max(2, len(live) - bounds.max_segments + 1)]
    if not dead and not merged:
        return done
    replaced = [s.name for s in dead + merged]
    # Name what the replaced segments replaced too, while it is still there: once they are
    # deleted, this segment is what keeps it skipped.
    below = {old for s in dead + merged if s.head for old in s.head.supersedes}
    done.replaced = sorted(set(replaced) | (below & {s.name for s in segments}))
    done.written, done.kept = _merge(folder, merged, bounds, now, done.replaced)
    return done


def _merge(
    folder: StoragePath,
    merged: list[Segment],
    bounds: Bounds,
    now: datetime,
    replaced: list[str],
) -> tuple[str, int]:
    """Write one segment of the live entries of ``merged`` that supersedes ``replaced``."""
    name = segment_name(now, uuid.uuid4().hex[:8])
    cutoff = int((now - bounds.max_age).timestamp()) if bounds.max_age is not None else None
    index = IndexBuilder()
    offset = 0
    try:
        with atomic_writer(child(folder, f"{name}.jsonl")) as out:
            for segment in merged:
                offset = _copy_live(folder, segment, cutoff, out, index, offset)
        index.write(child(folder, f"{name}.idx"), offset, replaced)
    finally:
        index.close()
    return name, index.count


def _copy_live(
    folder: StoragePath,
    segment: Segment,
    cutoff: int | None,
    out: IO[bytes],
    index: IndexBuilder,
    offset: int,
) -> int:
    """Append ``segment``'s entries younger than ``cutoff`` to ``out``, read front to back."""
    written = int(segment.written.timestamp())
    with open_to_read(child(folder, f"{segment.name}.jsonl")) as stream:
        for line in stream:
            if not line.strip():
                continue
            stored = _decode_stored(line)
            if not stored.stored:  # a line of a release before the time was kept in it
                stored.stored = written
                line = _encode(stored) + b"\n"
            if cutoff is not None and stored.stored < cutoff:
                continue
            key = bytes.fromhex(stored.key)
            index.add(key, custom_id_hash(stored.custom_id), offset, len(line), stored.stored)
            out.write(line)
            offset += len(line)
    return offset


def _delete_replaced(folder: StoragePath, bounds: Bounds, now: datetime) -> list[str]:
    """Delete the segments replaced by a compaction at least ``grace`` old, and data files
    without an index last written at least ``grace`` ago; their names."""
    deleted: list[str] = []
    segments = all_segments(folder)
    present = {s.name for s in segments}
    for segment in segments:
        if segment.head is None or now - segment.written < bounds.grace:
            continue
        for old in segment.head.supersedes:
            if old in present and old not in deleted:
                _delete(folder, old)
                deleted.append(old)
    for segment in segments:
        if (
            segment.head is not None
            and not segment.head.entries
            and now - segment.written >= bounds.grace
            and not (set(segment.head.supersedes) & (present - set(deleted)))
        ):
            _delete(folder, segment.name)
            deleted.append(segment.name)
    _, _, orphans = list_segments(folder)
    for name in orphans:
        data = child(folder, f"{name}.jsonl")
        try:
            modified = getattr(data.stat(), "st_mtime", None)  # type: ignore[attr-defined]
        except FileNotFoundError:
            continue
        age = now.timestamp() - float(modified) if modified is not None else None
        if age is not None and age >= bounds.grace.total_seconds():
            data.unlink(missing_ok=True)
            deleted.append(name)
    return deleted


def _delete(folder: StoragePath, name: str) -> None:
    """The index first (the segment is then no longer complete, so no longer listed)."""
    for suffix in (".idx", ".keys", ".jsonl"):
        child(folder, f"{name}{suffix}").unlink(missing_ok=True)
