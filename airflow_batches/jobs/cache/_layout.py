"""The cross-run cache's layout on storage and the records it is made of (see ``_lookup``).

``<cache_path>/v2/`` holds *segments*, each written once and never changed:

* ``<segment>.jsonl``: one :class:`StoredLine` per stored result;
* its index, written once the data is complete (a segment without one is not read):
  ``<segment>.idx`` (:class:`IndexHead`, then :data:`RECORD` records sorted by key, so that
  the records of a range of keys are one run of bytes), or ``<segment>.keys`` in segments of
  releases before it (:data:`KEYS_RECORD` records in the order of the data, no header).

A segment is named ``<UTC time, %Y%m%dT%H%M%S%f>-<8 hex>``: names sort by age. A job's folder
holds its lookup under ``cache/``.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import msgspec

CACHE_FOLDER = "cache"
VERSION = "v2"
CACHED_FILE = f"{CACHE_FOLDER}/cached.jsonl"
UNCACHED_FILE = f"{CACHE_FOLDER}/uncached.jsonl"
KEYS_FILE = f"{CACHE_FOLDER}/keys.jsonl"
PLAN_FILE = f"{CACHE_FOLDER}/plan.json"
KEYS_MEMO = f"{CACHE_FOLDER}/keys.bin"
"""Each staged request's key, custom_id hash and custom_id (``_plan._MEMO``), in order, after
the SHA-256 of the memo's layout and the cache's identity (endpoint, API version, betas): a
later job staged from the same receipt looks its keys up here, without reading its requests."""
KEYS_RECORD = struct.Struct(">16s8sQI")
"""A ``.keys`` record: key, :func:`custom_id_hash`, offset and length in the ``.jsonl``."""
RECORD = struct.Struct(">16s8sQII")
"""An ``.idx`` record: key, :func:`custom_id_hash`, offset and length in the ``.jsonl``, and
when the result was stored (Unix seconds)."""
KEY_ONLY = struct.Struct(f">16s{RECORD.size - 16}x")
BUCKETS = 256
"""An ``.idx`` is cut into this many runs of records by the first byte of their key."""
MAGIC = b"ABCIDX01"
_HEAD = struct.Struct(">8sQQQQI")
_BOUNDS = struct.Struct(f">{BUCKETS + 1}Q")
_STAMP = "%Y%m%dT%H%M%S%f"


class StoredLine(msgspec.Struct, kw_only=True):
    """One stored result: its key, the custom_id and batch that answered it, when it was
    stored (Unix seconds; 0 in segments of releases before it: the segment's time), and the
    result."""

    key: str
    custom_id: str
    batch_id: str
    stored: int = 0
    result: msgspec.Raw


class KeyLine(msgspec.Struct):
    """A miss of a job's lookup: its custom_id and key (``keys.jsonl``)."""

    custom_id: str
    key: str


decode_key_line = msgspec.json.Decoder(KeyLine).decode


_BLAKE2B_64 = hashlib.blake2b(digest_size=8)


def custom_id_hash(custom_id: str) -> bytes:
    """The 8 bytes of a custom_id in an index record (BLAKE2b-64)."""
    digest = _BLAKE2B_64.copy()  # cheaper than a new hash object with its options
    digest.update(custom_id.encode())
    return digest.digest()


def segment_name(now: datetime, tag: str) -> str:
    return f"{now.astimezone(UTC).strftime(_STAMP)}-{tag}"


def segment_time(name: str) -> datetime | None:
    """When a segment was written, from its name (None for a name of another shape)."""
    try:
        return datetime.strptime(name.partition("-")[0], _STAMP).replace(tzinfo=UTC)
    except ValueError:
        return None


@dataclass
class IndexHead:
    """The head of an ``.idx``: counts, ages, what it replaces, and where each bucket starts."""

    entries: int
    data_bytes: int
    oldest: int
    """The oldest and the newest ``stored`` time of its records (Unix seconds)."""
    newest: int
    supersedes: list[str] = field(default_factory=list)
    """Segments whose live entries this one holds (a compaction's): readers skip them."""
    bounds: tuple[int, ...] = ()
    """``BUCKETS + 1`` record numbers: bucket ``b`` is records ``bounds[b]:bounds[b + 1]``."""

    def encode(self) -> bytes:
        meta = json.dumps({"supersedes": self.supersedes}, separators=(",", ":")).encode()
        head = _HEAD.pack(MAGIC, self.entries, self.data_bytes, self.oldest, self.newest, len(meta))
        return head + meta + _BOUNDS.pack(*self.bounds)

    @classmethod
    def read(cls, stream: IO[bytes], name: str) -> IndexHead:
        """The head at the start of ``stream`` (left just after it)."""
        raw = _read_exactly(stream, _HEAD.size, name)
        magic, entries, data_bytes, oldest, newest, meta_length = _HEAD.unpack(raw)
        if magic != MAGIC:
            raise ValueError(f"cache segment {name}.idx: not an index of this format")
        meta: dict[str, Any] = json.loads(_read_exactly(stream, meta_length, name))
        bounds = _BOUNDS.unpack(_read_exactly(stream, _BOUNDS.size, name))
        if bounds[0] != 0 or bounds[-1] != entries or list(bounds) != sorted(bounds):
            raise ValueError(f"cache segment {name}.idx: its bucket bounds are inconsistent")
        supersedes = [str(s) for s in meta.get("supersedes") or []]
        return cls(entries, data_bytes, oldest, newest, supersedes, bounds)


def bucket_bounds(first_bytes: list[int]) -> tuple[int, ...]:
    """The bounds of sorted records from the count of records per first key byte."""
    bounds = [0]
    for count in first_bytes:
        bounds.append(bounds[-1] + count)
    return tuple(bounds)


def _read_exactly(stream: IO[bytes], size: int, name: str) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise ValueError(f"cache segment {name}.idx is cut short")
    return bytes(data)
