"""A lookup by key over a file read in about the order the keys are asked for.

The joins of a fetch and of an evaluation look up, for every result line, what was written
down at submission (the sidecar's metadata, the cache's keys) or by the night before (its
scores). Those files are written in the job's order, and results come back batch by batch: a
batch is a run of consecutive requests, answered in any order within it. A ``DiskIndex``
lookup (a SQLite query, mostly a page read) cost about as much as everything else done to the
line; :class:`Lookahead` answers the same question from a dict in the common case:

* a key asked for is taken from the entries read ahead, else the file is read on until it
  comes; entries passed on the way wait in the dict for their own turn, and each entry is
  handed out once (a key is asked for once: one final line per request);
* memory is bounded: when the entries waiting exceed ``max_entries`` (a little more than a
  batch holds, 100,000 requests) or ``max_bytes`` of values, they are moved to a ``DiskIndex``
  and the reading goes on with an empty dict; a key not in the dict is looked for there before
  the file is read on. So entries that wait long (the requests the cross-run cache answered,
  whose lines are published after the batches'; the requests of a first attempt while its
  follow-up is read) go to disk, and the batch being read stays in memory; the order of the
  results costs speed, never memory or correctness;
* a key the file does not hold is known absent once the file has been read to its end.

The files read this way hold one entry a key (a custom_id's metadata, a miss's key, a
request's score); were a key written twice, the first entry wins while it waits in memory.

Not thread-safe; ``close`` frees the index.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Self

from airflow_batches.jobs._index import DiskIndex

__all__ = ["MAX_AHEAD_BYTES", "MAX_AHEAD_ENTRIES", "Lookahead"]

MAX_AHEAD_ENTRIES = 120_000
"""Entries waiting in memory at most before they go to the index: one batch (100,000
requests) answered in any order fits."""
MAX_AHEAD_BYTES = 32 << 20
"""Bytes of values read ahead at most (32 MiB)."""

Entries = Callable[[], Iterable[tuple[str, bytes]]]
"""Opens the file afresh and yields its ``(key, value)`` entries, in the file's order."""


class Lookahead:
    """See the module docstring. ``take(key)`` once per key; the first entry of a key wins."""

    def __init__(
        self,
        entries: Entries,
        *,
        max_entries: int = MAX_AHEAD_ENTRIES,
        max_bytes: int = MAX_AHEAD_BYTES,
    ) -> None:
        self._open = entries
        self._entries: Iterator[tuple[str, bytes]] | None = None
        self._ahead: dict[str, bytes] = {}
        self._bytes = 0
        self._ended = False
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.index: DiskIndex | None = None
        """Where entries go once the bounds are passed (None until then)."""
        self.spills = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def take(self, key: str) -> bytes | None:
        """The value of ``key`` (None if the file holds none)."""
        ahead = self._ahead
        value = ahead.pop(key, None)
        if value is not None:
            self._bytes -= len(value)
            return value
        if self.index is not None:
            value = self.index.get(key)
            if value is not None:
                return value
        if self._ended:
            return None
        if self._entries is None:
            self._entries = iter(self._open())
        for k, v in self._entries:
            if k == key:
                return v
            if k in ahead:
                continue  # the first entry of a key wins
            ahead[k] = v
            self._bytes += len(v)
            if len(ahead) > self.max_entries or self._bytes > self.max_bytes:
                self._spill()
        self._ended = True
        self._entries = None
        return None

    def _spill(self) -> None:
        """Move the entries waiting to the disk index (made at the first spill)."""
        if self.index is None:
            self.index = DiskIndex()
        self.index.update(self._ahead.items())
        self._ahead.clear()
        self._bytes = 0
        self.spills += 1

    @property
    def waiting(self) -> int:
        """Entries read ahead and not asked for yet."""
        return len(self._ahead)

    def close(self) -> None:
        self._ahead.clear()
        self._entries = None
        if self.index is not None:
            self.index.close()
            self.index = None
