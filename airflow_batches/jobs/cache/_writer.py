"""Storing a job's new answers in the cross-run cache: one segment per fetch (see ``_lookup``).

The data is written as it comes (``<segment>.jsonl``, about a MiB at a time); its index
(``<segment>.idx``, records sorted by key, ``_segments.IndexBuilder``) once the data is
complete, which is what makes the segment visible. Then the cache is compacted if it is due
(``_compact``): a failed compaction is logged, never the fetch's failure.

A stored result needs its request's key, from the job's ``keys.jsonl`` (the lookup's misses, in
the job's order): read alongside the results (``jobs._lookahead``), not loaded whole first.
"""

from __future__ import annotations

import logging
import uuid
from binascii import hexlify
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import IO

import msgspec

from airflow_batches.jobs._lookahead import Lookahead
from airflow_batches.jobs._store import (
    StoragePath,
    atomic_writer,
    child,
    ensure_dir,
    open_to_read,
)
from airflow_batches.jobs.cache._compact import Bounds, compact
from airflow_batches.jobs.cache._layout import (
    custom_id_hash,
    decode_key_line,
    segment_name,
)
from airflow_batches.jobs.cache._segments import IndexBuilder

__all__ = ["CacheWriter"]

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode
_CHUNK = 1 << 20


class CacheWriter:
    """Stores the succeeded results of a job's misses as a new segment (see the module
    docstring). ``add`` (or ``skip``) every line, then ``commit``; ``abort`` leaves nothing
    behind."""

    def __init__(
        self,
        folder: StoragePath,
        keys_file: StoragePath,
        bounds: Bounds | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.folder = folder
        self.bounds = bounds or Bounds()
        self.clock = clock
        self.keys = Lookahead(lambda: _key_entries(keys_file))
        now = clock()
        self.stored_at = int(now.timestamp())
        self._stored_json = str(self.stored_at).encode()
        self.name = segment_name(now, uuid.uuid4().hex[:8])
        self._stack = ExitStack()
        self._data: IO[bytes] | None = None
        self._index = IndexBuilder()
        self._pending = bytearray()
        """Stored lines not written yet: written about a MiB at a time."""
        self._offset = 0
        self._batch, self._batch_json = "", b'""'
        self.stored = 0

    def add(self, custom_id: str, batch_id: str, result: bytes) -> None:
        """Store one succeeded result (the raw ``result`` member of its line)."""
        key = self.keys.take(custom_id)
        if key is None:
            return
        if self._data is None:
            ensure_dir(self.folder)
            target = child(self.folder, f"{self.name}.jsonl")
            self._data = self._stack.enter_context(atomic_writer(target))
        if batch_id != self._batch:
            self._batch, self._batch_json = batch_id, _encode(batch_id)
        # A StoredLine, written member by member (the same bytes as encoding the struct).
        data = b"".join(
            (
                b'{"key":"',
                hexlify(key),
                b'","custom_id":',
                _encode(custom_id),
                b',"batch_id":',
                self._batch_json,
                b',"stored":',
                self._stored_json,
                b',"result":',
                result,
                b"}\n",
            )
        )
        pending = self._pending
        pending += data
        if len(pending) >= _CHUNK:
            self._data.write(pending)
            pending.clear()
        self._index.add(key, custom_id_hash(custom_id), self._offset, len(data), self.stored_at)
        self._offset += len(data)
        self.stored += 1

    def skip(self, custom_id: str) -> None:
        """A line of the job's that is not stored (not succeeded): its key is let go."""
        self.keys.take(custom_id)

    def commit(self) -> int:
        """Publish the segment (data, then index), then compact the cache if due; returns
        the results stored."""
        try:
            if self._pending and self._data is not None:
                self._data.write(self._pending)
            self._stack.close()
            if self.stored:
                self._index.write(child(self.folder, f"{self.name}.idx"), self._offset, [])
        finally:
            self._close()
        if self.stored:
            try:
                compact(self.folder, self.bounds, self.clock())
            except Exception as exc:  # the results are stored; tidying up can wait
                log.warning("Could not compact the cross-run cache at %s: %s", self.folder, exc)
        return self.stored

    def abort(self) -> None:
        try:
            self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)
        except RuntimeError:
            pass
        finally:
            self._close()

    def _close(self) -> None:
        self._pending = bytearray()
        self._index.close()
        self.keys.close()


def _key_entries(keys_file: StoragePath) -> Iterator[tuple[str, bytes]]:
    with open_to_read(keys_file) as stream:
        for line in stream:
            if line.strip():
                entry = decode_key_line(line)
                yield entry.custom_id, bytes.fromhex(entry.key)
