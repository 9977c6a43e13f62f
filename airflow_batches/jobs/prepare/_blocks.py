"""Staged lines written in blocks by a second thread, each stream fingerprinted (SHA-256).

Hashing and writing a block release the GIL, so the writer thread does both while the
validating thread goes on. A job is staged into one stream, or, for a model matrix read in
one pass, into one stream per model (``_fanout``); one thread serves them all, in order.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from typing import IO

__all__ = ["Output", "Staging"]

_FLUSH_BYTES = 1 << 20
_QUEUED = 4


class Output:
    """One staged stream: lines gathered into blocks of about 1 MiB for the writer thread,
    which writes them to ``sink`` and takes their SHA-256 (the part's fingerprint)."""

    __slots__ = ("_pending", "_size", "_staging", "digest", "sink")

    def __init__(self, staging: Staging, sink: IO[bytes]) -> None:
        self._staging = staging
        self.sink = sink
        self.digest = hashlib.sha256()
        self._pending: list[bytes] = []
        self._size = 0

    def add(self, line: bytes) -> None:
        self._pending.append(line)
        self._size += len(line) + 1
        if self._size >= _FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._pending.append(b"")
            self._staging.put(self, b"\n".join(self._pending))
            self._pending = []
            self._size = 0


class Staging:
    """The writer thread of one or more :class:`Output` streams (:meth:`output`).

    At most ``_QUEUED`` blocks wait; blocks are handled in order, and an error of a sink is
    raised by the next block handed over, or by :meth:`sync` or :meth:`close`.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[Output, bytes] | None] = queue.Queue(maxsize=_QUEUED)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="stage-requests", daemon=True)
        self._thread.start()

    def __enter__(self) -> Staging:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop()

    def output(self, sink: IO[bytes]) -> Output:
        return Output(self, sink)

    def put(self, output: Output, block: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((output, block))

    def sync(self, *outputs: Output) -> None:
        """Flush ``outputs`` and wait until every block handed over is written."""
        for output in outputs:
            output.flush()
        self._queue.join()
        if self._error is not None:
            raise self._error

    def close(self, *outputs: Output) -> list[str]:
        """Write what is left, stop the writer; each output's fingerprint."""
        for output in outputs:
            output.flush()
        self._stop()
        if self._error is not None:
            raise self._error
        return [output.digest.hexdigest() for output in outputs]

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:
                    output, block = item
                    try:
                        output.digest.update(block)
                        output.sink.write(block)
                    except BaseException as exc:
                        self._error = exc
            finally:
                self._queue.task_done()
