"""Durable state: batch rows and counters in SQLite, request bodies and results in files.

SQLite holds only small rows. Everything that grows with a batch's size lives in the batch's
directory (see ``BatchFiles``), so a 100,000-request batch costs one row.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from airflow_batches.api._models import MessageBatch, RequestCounts
from airflow_batches.emulator.clock import to_datetime

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    workspace TEXT NOT NULL,
    api_version TEXT NOT NULL,
    betas TEXT NOT NULL,
    user_profile_id TEXT,
    n_requests INTEGER NOT NULL,
    body_bytes INTEGER NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    retention_seconds REAL NOT NULL,
    status TEXT NOT NULL,
    cancel_initiated_at REAL,
    ended_at REAL,
    deleted_at REAL,
    succeeded INTEGER NOT NULL DEFAULT 0,
    errored INTEGER NOT NULL DEFAULT 0,
    canceled INTEGER NOT NULL DEFAULT 0,
    expired INTEGER NOT NULL DEFAULT 0,
    results_bytes INTEGER NOT NULL DEFAULT 0,
    journal_count INTEGER NOT NULL DEFAULT 0,
    results_purged INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS counters (
    workspace TEXT NOT NULL,
    name TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (workspace, name)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass
class BatchRecord:
    """One batch as stored. Counts other than processing are the emulator's truth; the API
    view hides them until the batch has ended."""

    seq: int
    id: str
    workspace: str
    api_version: str
    betas: list[str]
    user_profile_id: str | None
    n_requests: int
    body_bytes: int
    created_at: float
    expires_at: float
    retention_seconds: float
    status: str = "in_progress"
    cancel_initiated_at: float | None = None
    ended_at: float | None = None
    deleted_at: float | None = None
    succeeded: int = 0
    errored: int = 0
    canceled: int = 0
    expired: int = 0
    results_bytes: int = 0
    journal_count: int = 0
    results_purged: bool = False

    @property
    def is_ended(self) -> bool:
        return self.status == "ended"

    @property
    def archive_at(self) -> float:
        return self.created_at + self.retention_seconds

    @property
    def processed(self) -> int:
        return self.succeeded + self.errored

    def archived_at(self, now: float) -> float | None:
        return self.archive_at if now >= self.archive_at else None

    def counts(self) -> RequestCounts:
        """The API's view: everything is ``processing`` until the batch has ended."""
        if not self.is_ended:
            return RequestCounts(processing=self.n_requests)
        return RequestCounts(
            processing=0,
            succeeded=self.succeeded,
            errored=self.errored,
            canceled=self.canceled,
            expired=self.expired,
        )

    def to_api(self, now: float, base_url: str) -> MessageBatch:
        results_url = None
        if self.is_ended:
            results_url = f"{base_url.rstrip('/')}/v1/messages/batches/{self.id}/results"
        archived = self.archived_at(now)
        return MessageBatch(
            id=self.id,
            type="message_batch",
            processing_status=self.status,  # type: ignore[arg-type]
            request_counts=self.counts(),
            created_at=to_datetime(self.created_at),
            expires_at=to_datetime(self.expires_at),
            ended_at=to_datetime(self.ended_at) if self.ended_at is not None else None,
            archived_at=to_datetime(archived) if archived is not None else None,
            cancel_initiated_at=(
                to_datetime(self.cancel_initiated_at)
                if self.cancel_initiated_at is not None
                else None
            ),
            results_url=results_url,
        )

    def to_admin(self, now: float) -> dict[str, Any]:
        """Everything, including the true counts while the batch runs."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["processed"] = self.processed
        out["archived_at"] = self.archived_at(now)
        return out


_COLUMNS = [f.name for f in fields(BatchRecord)]


class BatchFiles:
    """The files of one batch.

    - ``body.json``   the create body exactly as received
    - ``index.bin``   (offset u64, length u32) of each request item inside body.json
    - ``ids.txt``     the custom_ids, one a line, in request order
    - ``results.jsonl`` result lines, appended as requests finish
    - ``journal.bin`` (index u32, state u8) per finished request, appended with the results;
      with the lengths committed to SQLite it tells, after a crash, what is really done
    """

    INDEX_RECORD = 12
    JOURNAL_RECORD = 5

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.body = directory / "body.json"
        self.index = directory / "index.bin"
        self.ids = directory / "ids.txt"
        self.results = directory / "results.jsonl"
        self.journal = directory / "journal.bin"


class Store:
    """In-memory map of batch records, written through to SQLite.

    Used from the event loop only, so it needs no locking.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.batches_dir = data_dir / "batches"
        self.incoming_dir = data_dir / "incoming"
        self.batches_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.incoming_dir, ignore_errors=True)
        self.incoming_dir.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(data_dir / "emulator.sqlite3", check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._db.commit()
        self._records: dict[str, BatchRecord] = {}
        self._counters: dict[str, dict[str, int]] = defaultdict(dict)
        self._load()

    def _load(self) -> None:
        cur = self._db.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM batches WHERE deleted_at IS NULL"
        )
        for row in cur:
            values = dict(zip(_COLUMNS, row, strict=True))
            values["betas"] = json.loads(values["betas"])
            values["results_purged"] = bool(values["results_purged"])
            record = BatchRecord(**values)
            self._records[record.id] = record
        for workspace, name, value in self._db.execute(
            "SELECT workspace, name, value FROM counters"
        ):
            self._counters[workspace][name] = value

    def close(self) -> None:
        self._db.commit()
        self._db.close()

    # -- batches ---------------------------------------------------------------------------

    def files(self, batch_id: str) -> BatchFiles:
        return BatchFiles(self.batches_dir / batch_id)

    def insert(self, record: BatchRecord) -> BatchRecord:
        values = {f.name: getattr(record, f.name) for f in fields(record) if f.name != "seq"}
        values["betas"] = json.dumps(values["betas"])
        cols = list(values)
        cur = self._db.execute(
            f"INSERT INTO batches ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            [values[c] for c in cols],
        )
        self._db.commit()
        record.seq = int(cur.lastrowid or 0)
        self._records[record.id] = record
        return record

    def save(self, record: BatchRecord, *, commit: bool = True) -> None:
        values = {f.name: getattr(record, f.name) for f in fields(record)}
        values["betas"] = json.dumps(values["betas"])
        values["results_purged"] = int(values["results_purged"])
        cols = [c for c in values if c not in ("seq", "id")]
        self._db.execute(
            f"UPDATE batches SET {', '.join(f'{c} = ?' for c in cols)} WHERE id = ?",
            [values[c] for c in cols] + [record.id],
        )
        if commit:
            self._db.commit()

    def commit(self) -> None:
        self._db.commit()

    def get(self, batch_id: str) -> BatchRecord | None:
        return self._records.get(batch_id)

    def delete(self, record: BatchRecord, now: float) -> None:
        record.deleted_at = now
        self.save(record)
        del self._records[record.id]

    def all(self) -> Iterable[BatchRecord]:
        return self._records.values()

    def seq_of(self, batch_id: str) -> int | None:
        """Sequence number of a batch, deleted ones included (pagination cursors survive)."""
        record = self._records.get(batch_id)
        if record is not None:
            return record.seq
        row = self._db.execute("SELECT seq FROM batches WHERE id = ?", (batch_id,)).fetchone()
        return int(row[0]) if row else None

    def page(
        self,
        workspace: str,
        *,
        limit: int,
        before_seq: int | None = None,
        after_seq: int | None = None,
    ) -> tuple[list[BatchRecord], bool]:
        """Newest first. ``after_seq``: older than it; ``before_seq``: newer than it."""
        mine = sorted(
            (r for r in self._records.values() if r.workspace == workspace),
            key=lambda r: r.seq,
            reverse=True,
        )
        if before_seq is not None:
            newer = [r for r in mine if r.seq > before_seq]
            page = newer[-limit:]
            return page, len(newer) > len(page)
        if after_seq is not None:
            mine = [r for r in mine if r.seq < after_seq]
        return mine[:limit], len(mine) > limit

    # -- counters --------------------------------------------------------------------------

    def bump(self, workspace: str, name: str, by: int = 1) -> None:
        current = self._counters[workspace].get(name, 0) + by
        self._counters[workspace][name] = current
        self._db.execute(
            "INSERT INTO counters (workspace, name, value) VALUES (?, ?, ?) "
            "ON CONFLICT (workspace, name) DO UPDATE SET value = excluded.value",
            (workspace, name, current),
        )
        self._db.commit()

    def counters(self) -> dict[str, dict[str, int]]:
        return {ws: dict(values) for ws, values in self._counters.items()}

    # -- meta ------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
        self._db.commit()

    def reset(self) -> None:
        """Forget every batch and counter (the clock stays where it is)."""
        self._db.execute("DELETE FROM batches")
        self._db.execute("DELETE FROM counters")
        self._db.commit()
        self._records.clear()
        self._counters.clear()
        for child in self.batches_dir.iterdir():
            shutil.rmtree(child, ignore_errors=True)


def iter_lines_of(path: Path) -> Iterator[str]:
    with path.open(encoding="ascii") as fh:
        for line in fh:
            yield line.rstrip("\n")
