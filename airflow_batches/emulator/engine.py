"""Processing: asyncio workers, the batch lifecycle, crash-safe progress.

Workers claim requests of unfinished batches round-robin, in a per-batch order shuffled with
the seed (so results never come back in input order), answer them in a thread pool and append
the result lines. Progress is committed as (results file length, journal length, counts) in
one SQLite row; after a crash the files are cut back to the committed lengths and the rest is
simply processed again, which the deterministic responder makes harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import struct
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import IO

import msgspec

from airflow_batches.api._rules import ModelRules
from airflow_batches.emulator.answering import (
    CANCELED,
    EXPIRED,
    SUCCEEDED,
    BatchAnswers,
)
from airflow_batches.emulator.clock import Clock
from airflow_batches.emulator.config import EmulatorConfig
from airflow_batches.emulator.intake import RequestIndex
from airflow_batches.emulator.responders import CacheLedger, Responder, load_responder
from airflow_batches.emulator.store import BatchFiles, BatchRecord, Store, iter_lines_of

log = logging.getLogger(__name__)

_JOURNAL = struct.Struct("<IB")
_CHUNK = 256
_CHECKPOINT_EVERY = 0.25
_TICK = 0.05

_encoder = msgspec.json.Encoder()


class BatchWork:
    """The in-memory state of one unfinished batch."""

    def __init__(self, record: BatchRecord, files: BatchFiles, order: list[int]) -> None:
        self.record = record
        self.files = files
        self.index = RequestIndex.load(files)
        self.order = order
        """Request indices still to process, in processing order; ``cursor`` walks it."""
        self.cursor = 0
        self.inflight = 0
        self.closed = False
        self.dirty = False
        self.checkpointed = time.monotonic()
        self.body_fd = os.open(files.body, os.O_RDONLY)
        self.results: IO[bytes] = files.results.open("ab")
        self.journal: IO[bytes] = files.journal.open("ab")

    @property
    def waiting(self) -> int:
        return len(self.order) - self.cursor

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.results.close()
            self.journal.close()
            os.close(self.body_fd)


class Engine:
    """Owns every unfinished batch. Runs on the event loop; answers requests in threads."""

    def __init__(self, store: Store, clock: Clock, config: Callable[[], EmulatorConfig]) -> None:
        self._store = store
        self._clock = clock
        self._config = config
        self.cache = CacheLedger()
        self._work: dict[str, BatchWork] = {}
        self._turns: deque[str] = deque()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._ticker: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._responder_path = ""
        self._responder: Responder | None = None
        self._clock_saved = 0.0

    # -- life of the engine ----------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._ticker is not None

    async def start(self) -> None:
        if self.running:
            return
        for record in list(self._store.all()):
            if not record.is_ended:
                self._resume(record)
        self._ticker = asyncio.create_task(self._tick_forever(), name="emulator-tick")
        self.reconfigure()

    async def stop(self) -> None:
        tasks = [*self._tasks, *([self._ticker] if self._ticker else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._ticker = None
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        for work in list(self._work.values()):
            self._checkpoint(work)
            work.close()
        self._work.clear()
        self._turns.clear()
        self._save_clock(force=True)

    def reconfigure(self) -> None:
        """Apply a changed config: worker count, responder, time scale, pause."""
        cfg = self._config()
        self._clock.set_scale(cfg.time_scale)
        if cfg.responder != self._responder_path:
            self._responder = load_responder(cfg.responder)
            self._responder_path = cfg.responder
        if not self.running:
            return
        if self._executor is None or len(self._tasks) != cfg.workers:
            for task in self._tasks:
                task.cancel()
            self._tasks = [
                asyncio.create_task(self._worker(), name=f"emulator-worker-{i}")
                for i in range(cfg.workers)
            ]
            old = self._executor
            self._executor = ThreadPoolExecutor(
                max_workers=max(2, cfg.workers), thread_name_prefix="emulator-responder"
            )
            if old is not None:
                old.shutdown(wait=False)
        self._wake.set()

    # -- batches ---------------------------------------------------------------------------

    def add(self, record: BatchRecord) -> None:
        self._resume(record)
        self._wake.set()

    def _resume(self, record: BatchRecord) -> None:
        files = self._store.files(record.id)
        done = bytearray(record.n_requests)
        # Anything written after the last commit is cut off and processed again.
        with files.results.open("ab") as fh:
            fh.truncate(record.results_bytes)
        with files.journal.open("ab") as fh:
            fh.truncate(record.journal_count * _JOURNAL.size)
        for idx, _state in _JOURNAL.iter_unpack(files.journal.read_bytes()):
            done[idx] = 1
        order = [i for i in self._order(record) if not done[i]]
        work = BatchWork(record, files, order)
        self._work[record.id] = work
        self._turns.append(record.id)
        if not order:
            self._maybe_finish(work)

    def _order(self, record: BatchRecord) -> list[int]:
        order = list(range(record.n_requests))
        random.Random(f"{self._config().seed}:{record.id}").shuffle(order)
        return order

    def queued(self) -> int:
        """Requests created but not yet answered, all batches together."""
        return sum(w.waiting + w.inflight for w in self._work.values())

    def progress(self, batch_id: str) -> dict[str, int] | None:
        work = self._work.get(batch_id)
        if work is None:
            return None
        return {"waiting": work.waiting, "inflight": work.inflight}

    def cancel(self, record: BatchRecord) -> None:
        record.status = "canceling"
        record.cancel_initiated_at = self._clock.now()
        self._store.save(record)
        work = self._work.get(record.id)
        # The cancel call answers "canceling"; the end comes on the next tick at the earliest.
        if work is None:
            self._finish(record, None, "canceled")

    def drop(self, record: BatchRecord) -> None:
        """Forget an unfinished batch (deleted while running)."""
        work = self._work.pop(record.id, None)
        if work is not None:
            work.close()

    # -- workers ---------------------------------------------------------------------------

    def _claim(self) -> tuple[BatchWork, list[int]] | None:
        cfg = self._config()
        if cfg.paused:
            return None
        now = self._clock.now()
        size = 1 if cfg.latency > 0 else _CHUNK
        for _ in range(len(self._turns)):
            batch_id = self._turns[0]
            self._turns.rotate(-1)
            work = self._work.get(batch_id)
            if work is None or work.record.status != "in_progress" or work.waiting == 0:
                continue
            if now >= work.record.expires_at:
                continue
            taken = work.order[work.cursor : work.cursor + size]
            work.cursor += len(taken)
            work.inflight += len(taken)
            return work, taken
        return None

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            claim = self._claim()
            if claim is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=0.1)
                continue
            work, indices = claim
            cfg = self._config()
            assert self._responder is not None
            assert self._executor is not None
            job = BatchAnswers(
                work.record,
                work.index,
                work.body_fd,
                cfg,
                self._responder,
                self._clock,
                self.cache,
                ModelRules(betas=work.record.betas) if cfg.model_rules else None,
            )
            try:
                if cfg.latency > 0:
                    await asyncio.sleep(cfg.latency)
                outcomes = await loop.run_in_executor(self._executor, job.run, indices)
            except asyncio.CancelledError:
                self._give_back(work, indices)
                raise
            except Exception:
                if not work.closed:
                    log.exception("processing failed in batch %s; will retry", work.record.id)
                self._give_back(work, indices)
                await asyncio.sleep(0.1)
                continue
            self._record(work, outcomes)

    def _give_back(self, work: BatchWork, indices: list[int]) -> None:
        work.inflight -= len(indices)
        if not work.closed:
            work.order.extend(indices)

    def _record(self, work: BatchWork, outcomes: list[tuple[int, int, bytes]]) -> None:
        work.inflight -= len(outcomes)
        if work.closed:
            return
        record = work.record
        for idx, state, line in outcomes:
            work.results.write(line)
            work.results.write(b"\n")
            work.journal.write(_JOURNAL.pack(idx, state))
            if state == SUCCEEDED:
                record.succeeded += 1
            else:
                record.errored += 1
        work.dirty = True
        self._maybe_finish(work)

    # -- lifecycle -------------------------------------------------------------------------

    def _checkpoint(self, work: BatchWork) -> None:
        if work.closed:
            return
        work.results.flush()
        work.journal.flush()
        work.record.results_bytes = work.results.tell()
        work.record.journal_count = work.journal.tell() // _JOURNAL.size
        self._store.save(work.record)
        work.dirty = False
        work.checkpointed = time.monotonic()

    def _maybe_finish(self, work: BatchWork, now: float | None = None) -> None:
        if work.closed or work.inflight:
            return
        record = work.record
        now = self._clock.now() if now is None else now
        if record.status == "canceling":
            started = record.cancel_initiated_at or now
            if now >= started + self._config().cancel_seconds:
                self._finish(record, work, "canceled")
        elif work.waiting == 0:
            self._finish(record, work, None)
        elif now >= record.expires_at:
            self._finish(record, work, "expired")

    def _finish(self, record: BatchRecord, work: BatchWork | None, leftover: str | None) -> None:
        """End a batch: the requests never answered become ``leftover`` lines."""
        now = self._clock.now()
        if work is not None and work.waiting:
            pending = work.order[work.cursor :]
            ids = list(iter_lines_of(work.files.ids))
            state = CANCELED if leftover == "canceled" else EXPIRED
            for idx in pending:
                line = _encoder.encode({"custom_id": ids[idx], "result": {"type": leftover}})
                work.results.write(line + b"\n")
                work.journal.write(_JOURNAL.pack(idx, state))
            if state == CANCELED:
                record.canceled += len(pending)
            else:
                record.expired += len(pending)
            work.cursor = len(work.order)
        record.status = "ended"
        # An expired batch ended at its deadline, however late the clock noticed.
        record.ended_at = record.expires_at if leftover == "expired" else now
        if work is not None:
            self._checkpoint(work)
            work.close()
        else:
            self._store.save(record)
        self._work.pop(record.id, None)
        with contextlib.suppress(ValueError):
            self._turns.remove(record.id)

    def tick(self) -> None:
        """Expire, finish cancels, commit progress, archive old results."""
        now = self._clock.now()
        mono = time.monotonic()
        for work in list(self._work.values()):
            self._maybe_finish(work, now)
            if work.dirty and mono - work.checkpointed >= _CHECKPOINT_EVERY:
                self._checkpoint(work)
        for record in list(self._store.all()):
            if record.is_ended and not record.results_purged and now >= record.archive_at:
                self.purge_results(record)
        self._save_clock()

    def purge_results(self, record: BatchRecord) -> None:
        files = self._store.files(record.id)
        with contextlib.suppress(FileNotFoundError):
            files.results.unlink()
        record.results_purged = True
        self._store.save(record)

    def remove_files(self, record: BatchRecord) -> None:
        shutil.rmtree(self._store.files(record.id).dir, ignore_errors=True)

    def _save_clock(self, force: bool = False) -> None:
        mono = time.monotonic()
        if force or mono - self._clock_saved >= 1.0:
            self._store.set_meta("clock", repr(self._clock.now()))
            self._clock_saved = mono

    async def _tick_forever(self) -> None:
        while True:
            try:
                self.tick()
            except Exception:
                log.exception("emulator tick failed")
            await asyncio.sleep(_TICK)
