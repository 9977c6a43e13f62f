"""A key -> value index on local disk, for joins over any number of requests in bounded memory.

Joining results to what was known at submission (a request's metadata, its cross-run cache
key, last night's score of the same request) needs a lookup by custom_id while the results
stream by in the API's order, not ours. A dict of every request would grow with the job;
:class:`DiskIndex` keeps the entries in a private SQLite file instead (the standard library's,
one table ``WITHOUT ROWID`` keyed by the id) with a page cache of a few MiB, so memory stays
flat whatever the number of entries: about 4 MiB of cache, plus one batch of pending inserts.

The file is a throw-away derived from what is on shared storage (the staged sidecars, the
previous run's scores): it lives in a temporary folder for the length of one task try and is
rebuilt by the next, which is why nothing here needs durability (no journal, no fsync).
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["DiskIndex"]

_CACHE_KIB = 4096
_BATCH = 5000


class DiskIndex:
    """A bounded-memory map of ``str -> bytes`` (first value wins), plus an ordered walk.

    Use as a context manager; :meth:`close` deletes the file. Not thread-safe.

    :param folder: where the temporary file goes (default: the system's temporary folder).
    """

    def __init__(self, folder: str | Path | None = None) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="airflow-batches-index-", dir=folder)
        self.path = Path(self._dir.name) / "index.sqlite3"
        self._db = sqlite3.connect(self.path, isolation_level=None)
        for pragma in (
            "journal_mode=OFF",
            "synchronous=OFF",
            "temp_store=FILE",
            f"cache_size=-{_CACHE_KIB}",
            "locking_mode=EXCLUSIVE",
        ):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID")
        self._pending: list[tuple[str, bytes]] = []
        self.count = 0

    def __repr__(self) -> str:
        return f"DiskIndex({self.count} entries at {str(self.path)!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def put(self, key: str, value: bytes) -> None:
        """Add an entry; a key already present keeps its first value."""
        self._pending.append((key, value))
        if len(self._pending) >= _BATCH:
            self._flush()

    def update(self, entries: Iterable[tuple[str, bytes]]) -> None:
        for key, value in entries:
            self.put(key, value)

    def _flush(self) -> None:
        if not self._pending:
            return
        db = self._db
        before = db.total_changes
        db.execute("BEGIN")
        db.executemany("INSERT OR IGNORE INTO kv (k, v) VALUES (?, ?)", self._pending)
        db.execute("COMMIT")
        self.count += db.total_changes - before
        self._pending.clear()

    def get(self, key: str) -> bytes | None:
        if self._pending:
            self._flush()
        row = self._db.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __len__(self) -> int:
        self._flush()
        return self.count

    def items(self) -> Iterator[tuple[str, bytes]]:
        """Every entry in key order, streamed from disk."""
        self._flush()
        for key, value in self._db.execute("SELECT k, v FROM kv ORDER BY k"):
            yield key, bytes(value)

    def close(self) -> None:
        self._pending.clear()
        try:
            self._db.close()
        finally:
            self._dir.cleanup()
