"""Pre-flight: validate every request, encode it once, and plan the batches (shards).

One pass over the input, whatever its size: each request is checked (``_validate``), encoded
exactly as it will be sent, appended to a staging file and assigned to a shard. Nothing is
sent until the whole input has passed, so a bad line 90,000 never leaves 89,999 requests
half-submitted. Memory holds one request at a time, staging blocks of about 1 MiB (a few in
flight to the writer thread), and 16 bytes per custom_id (for uniqueness).
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Literal

from airflow_batches.api import BatchesError
from airflow_batches.api._envelope import ENVELOPE_BYTES, SEPARATOR, frame_body
from airflow_batches.jobs._ids import IdsDigest
from airflow_batches.jobs.prepare._problems import Problem, RequestValidationError
from airflow_batches.jobs.prepare._request_files import (
    FILE,
)
from airflow_batches.jobs.prepare._validate import RequestValidator

__all__ = ["CustomIds", "OnInvalid", "Prepared", "Shard", "iter_shard_body", "prepare"]

OnInvalid = Literal["fail", "skip"]
_FLUSH_BYTES = 1 << 20
_QUEUED = 4


@dataclass(frozen=True)
class Shard:
    """A contiguous run of staged requests that becomes one batch."""

    index: int
    first: int
    """Ordinal (0-based) of the shard's first request among the accepted ones."""
    count: int
    offset: int
    """Byte offset of the shard's first line in the staging file."""
    length: int
    """Bytes of the shard's lines in the staging file, newlines included."""
    ids_digest: str = ""
    """Digest of the shard's custom_ids (``_ids``): how a fetch tells its results are ours."""

    @property
    def body_bytes(self) -> int:
        """Exact size of the create body: envelope + lines joined by commas."""
        return ENVELOPE_BYTES + self.length - 1


@dataclass
class Prepared:
    """The outcome of pre-flight: what will be sent, where it is staged, how it is split."""

    fingerprint: str
    request_count: int
    shards: list[Shard]
    rejected: list[Problem] = field(default_factory=list)
    rejected_count: int = 0


class CustomIds:
    """An exact set of custom_ids in about 22 MB per million (a ``set`` of str needs ~90).

    Each id is kept as its 128-bit BLAKE2b digest (two distinct ids meet by chance with
    probability 2**-128, unlike the 64 bits of ``hash()``), in buckets chosen by the digest's
    first bits: a bucket is one bytearray of 16-byte digests, searched with ``find``. There are
    4,096 buckets at first (small enough to stay in cache); past 128 digests a bucket on
    average they are split 16 ways, so a search never scans more than about 2 KB.
    """

    _SIZE = 16
    _GROW_AT = 128

    def __init__(self) -> None:
        self._shift = 128 - 12
        self._buckets = [bytearray() for _ in range(1 << 12)]
        self._limit = self._GROW_AT << 12
        self.count = 0

    def add(self, custom_id: str) -> bool:
        """Add ``custom_id``; False if it was already there."""
        digest = self._digest(custom_id)
        bucket = self._buckets[int.from_bytes(digest) >> self._shift]
        at = bucket.find(digest)
        while at >= 0:
            if at % self._SIZE == 0:
                return False
            at = bucket.find(digest, at + 1)
        bucket += digest
        self.count += 1
        if self.count > self._limit:
            self._split()
        return True

    def _split(self) -> None:
        shift = self._shift - 4
        buckets = [bytearray() for _ in range(len(self._buckets) << 4)]
        size = self._SIZE
        for old in self._buckets:
            for at in range(0, len(old), size):
                digest = old[at : at + size]
                buckets[int.from_bytes(digest) >> shift] += digest
        self._buckets, self._shift = buckets, shift
        self._limit = self._GROW_AT * len(buckets) if shift > 128 - 20 else 1 << 62

    @staticmethod
    def _digest(custom_id: str) -> bytes:
        return hashlib.blake2b(custom_id.encode(), digest_size=16).digest()


class _Staging:
    """Writes staged lines in blocks of about 1 MiB and fingerprints them (SHA-256).

    Hashing and writing a block release the GIL, so a second thread does both while the
    validating thread goes on; at most ``_QUEUED`` blocks wait. Blocks are handled in order,
    and an error of the sink is raised by the next ``add`` or by ``close``.
    """

    def __init__(self, sink: IO[bytes]) -> None:
        self.sink = sink
        self.digest = hashlib.sha256()
        self._pending: list[bytes] = []
        self._size = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_QUEUED)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="stage-requests", daemon=True)
        self._thread.start()

    def __enter__(self) -> _Staging:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop()

    def add(self, line: bytes) -> None:
        self._pending.append(line)
        self._size += len(line) + 1
        if self._size >= _FLUSH_BYTES:
            self._flush()

    def close(self) -> str:
        """Write what is left, wait for the writer; the fingerprint of all staged lines."""
        self._flush()
        self._stop()
        if self._error is not None:
            raise self._error
        return self.digest.hexdigest()

    def _flush(self) -> None:
        if self._error is not None:
            raise self._error
        if self._pending:
            self._pending.append(b"")
            self._queue.put(b"\n".join(self._pending))
            self._pending = []
            self._size = 0

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _drain(self) -> None:
        while True:
            block = self._queue.get()
            if block is None:
                return
            if self._error is None:
                try:
                    self.digest.update(block)
                    self.sink.write(block)
                except BaseException as exc:
                    self._error = exc


def prepare(
    records: Iterable[tuple[str, Any]],
    validator: RequestValidator,
    sink: IO[bytes],
    *,
    on_invalid: OnInvalid = "fail",
    max_reported: int = 1000,
) -> Prepared:
    """Validate, encode and stage every request, and plan the shards.

    Raises ``RequestValidationError`` listing the problems (the first ``max_reported`` are
    kept; its message shows what fits about 2,000 characters) when any request is invalid and
    ``on_invalid`` is "fail"; with "skip" the invalid requests are left out and returned in
    ``Prepared.rejected``, unless the file itself is unreadable (then it always fails).
    """
    limits = validator.limits
    check = validator.check
    seen = CustomIds()
    problems: list[Problem] = []
    problem_count = 0
    unreadable = False
    shards: list[Shard] = []
    shard_first = shard_count = shard_offset = shard_length = 0
    shard_ids = IdsDigest()
    offset = accepted = 0
    max_requests = limits.max_requests
    room_bytes = limits.max_bytes - ENVELOPE_BYTES + 1  # lines + newlines a shard can hold

    def close_shard() -> None:
        digest = shard_ids.hexdigest()
        shards.append(
            Shard(len(shards), shard_first, shard_count, shard_offset, shard_length, digest)
        )

    with _Staging(sink) as staging:
        stage, unique = staging.add, seen.add
        for location, raw in records:
            checked = check(location, raw)
            if isinstance(checked, list):
                problem_count += len(checked)
                room = max_reported - len(problems)
                problems.extend(checked[: max(room, 0)])
                unreadable = unreadable or checked[0].field == FILE
                continue
            custom_id, line = checked
            if not unique(custom_id):
                problem_count += 1
                if len(problems) < max_reported:
                    problems.append(
                        Problem(location, custom_id, "custom_id", "is used by an earlier request")
                    )
                continue
            if problem_count and on_invalid == "fail":
                continue  # the job will not be sent: keep checking, stop staging

            size = len(line) + 1
            if shard_count and (shard_count >= max_requests or shard_length + size > room_bytes):
                close_shard()
                shard_first, shard_count, shard_offset, shard_length = accepted, 0, offset, 0
                shard_ids = IdsDigest()
            shard_ids.add(custom_id)
            stage(line)
            offset += size
            shard_length += size
            shard_count += 1
            accepted += 1

        fingerprint = staging.close()
    if problem_count and (on_invalid == "fail" or unreadable):
        raise RequestValidationError.from_problems(
            problems, problem_count, anthropic_version=validator.anthropic_version
        )
    if shard_count:
        close_shard()
    if not accepted:
        if problem_count:
            raise RequestValidationError.from_problems(
                problems, problem_count, anthropic_version=validator.anthropic_version
            )
        raise RequestValidationError(
            "the input holds no requests (it is empty, or only blank lines); nothing to submit"
        )
    return Prepared(
        fingerprint=fingerprint,
        request_count=accepted,
        shards=shards,
        rejected=problems,
        rejected_count=problem_count,
    )


def iter_shard_body(
    open_staged: Callable[[], IO[bytes]], shard: Shard, *, chunk_size: int = 1 << 20
) -> Iterator[bytes]:
    """The create body of one shard, streamed from the staging file (``frame_body``'s framing);
    exactly ``shard.body_bytes`` long."""
    return frame_body(_staged_requests(open_staged, shard, chunk_size))


def _staged_requests(
    open_staged: Callable[[], IO[bytes]], shard: Shard, chunk_size: int
) -> Iterator[bytes]:
    """The shard's staged lines joined by the body's separator, in blocks. Staged lines never
    contain a raw newline (JSON escapes it), so turning the newlines between them into the
    separator is a byte replacement."""
    remaining = shard.length - 1  # the shard's last newline is not sent
    with open_staged() as stream:
        stream.seek(shard.offset)
        while remaining > 0:
            data = stream.read(min(chunk_size, remaining))
            if not data:
                raise BatchesError(
                    f"staging file ended {remaining} bytes early while reading shard "
                    f"{shard.index}; it was changed or truncated"
                )
            remaining -= len(data)
            yield data.replace(b"\n", SEPARATOR)
