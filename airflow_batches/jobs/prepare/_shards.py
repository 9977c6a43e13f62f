"""Pre-flight: validate every request, encode it once, and plan the batches (shards).

One pass over the input, whatever its size: each request is checked (``_validate``), encoded
exactly as it will be sent, appended to a staging file and assigned to a shard. Nothing is
sent until the whole input has passed, so a bad line 90,000 never leaves 89,999 requests
half-submitted. Memory holds one request at a time, staging blocks of about 1 MiB (a few in
flight to the writer thread), and 16 bytes per custom_id (for uniqueness).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Literal

from airflow_batches.api import BatchesError
from airflow_batches.api._envelope import ENVELOPE_BYTES, SEPARATOR, frame_body
from airflow_batches.jobs._ids import IdsDigest, id_digest
from airflow_batches.jobs.prepare._blocks import Staging
from airflow_batches.jobs.prepare._limits import Limits
from airflow_batches.jobs.prepare._problems import Problem, RequestValidationError
from airflow_batches.jobs.prepare._request_files import FILE
from airflow_batches.jobs.prepare._validate import RequestValidator

__all__ = [
    "CustomIds",
    "OnInvalid",
    "Part",
    "Prepared",
    "Shard",
    "id_digest",
    "iter_shard_body",
    "prepare",
]

OnInvalid = Literal["fail", "skip"]


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

    Each id is kept as its 128-bit BLAKE2b digest (:func:`id_digest`; two distinct ids meet by
    chance with probability 2**-128, unlike the 64 bits of ``hash()``). Up to
    :data:`_IN_A_SET` of them sit in a ``set`` (fast, about 100 bytes each); past that, in
    buckets chosen by the digest's first bits: a bucket is one bytearray of 16-byte digests,
    searched with ``find``. There are 4,096 buckets at first (small enough to stay in cache);
    past 128 digests a bucket on average they are split 16 ways, so a search never scans more
    than about 2 KB.
    """

    _SIZE = 16
    _GROW_AT = 128
    _IN_A_SET = 131_072

    def __init__(self) -> None:
        self._set: set[bytes] | None = set()
        self._shift = 128 - 12
        self._buckets: list[bytearray] = []
        self._limit = self._GROW_AT << 12
        self.count = 0

    def add(self, custom_id: str) -> bool:
        """Add ``custom_id``; False if it was already there."""
        return self.add_digest(id_digest(custom_id))

    def add_digest(self, digest: bytes) -> bool:
        """Add an id by its :func:`id_digest`; False if it was already there."""
        small = self._set
        if small is not None:
            if digest in small:
                return False
            small.add(digest)
            self.count += 1
            if self.count > self._IN_A_SET:
                self._to_buckets(small)
            return True
        bucket = self._buckets[int.from_bytes(digest) >> self._shift]
        if self._find(bucket, digest):
            return False
        bucket += digest
        self.count += 1
        if self.count > self._limit:
            self._split()
        return True

    def __contains__(self, digest: object) -> bool:
        """Whether the id of this :func:`id_digest` is in the set."""
        if not isinstance(digest, bytes):
            return False
        if self._set is not None:
            return digest in self._set
        return self._find(self._buckets[int.from_bytes(digest) >> self._shift], digest)

    def _to_buckets(self, small: set[bytes]) -> None:
        self._set = None
        self._buckets = [bytearray() for _ in range(1 << 12)]
        for digest in small:
            self._buckets[int.from_bytes(digest) >> self._shift] += digest
        while self.count > self._limit:
            self._split()

    def _find(self, bucket: bytearray, digest: bytes) -> bool:
        at = bucket.find(digest)
        while at >= 0:
            if at % self._SIZE == 0:
                return True
            at = bucket.find(digest, at + 1)
        return False

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


class Part:
    """Pre-flight's account of one part of the input (the whole input, or one model's share
    of a matrix): its problems (the first ``max_reported`` kept), and its shards, planned as
    requests are accepted."""

    def __init__(self, limits: Limits, on_invalid: OnInvalid, max_reported: int) -> None:
        self.on_invalid = on_invalid
        self.max_reported = max_reported
        self.max_requests = limits.max_requests
        self.room_bytes = limits.max_bytes - ENVELOPE_BYTES + 1  # lines + newlines per shard
        self.problems: list[Problem] = []
        self.problem_count = 0
        self.unreadable = False
        self.shards: list[Shard] = []
        self._first = self._count = self._offset = self._length = 0
        self._ids = IdsDigest()
        self.offset = self.accepted = 0

    def reject(self, problems: list[Problem]) -> None:
        self.problem_count += len(problems)
        room = self.max_reported - len(self.problems)
        self.problems.extend(problems[: max(room, 0)])
        self.unreadable = self.unreadable or problems[0].field == FILE

    def duplicate(self, location: str, custom_id: str) -> None:
        self.problem_count += 1
        if len(self.problems) < self.max_reported:
            self.problems.append(
                Problem(location, custom_id, "custom_id", "is used by an earlier request")
            )

    def accept(self, digest: bytes, size: int) -> bool:
        """Plan a request of ``size`` bytes (its newline included) whose custom_id has this
        :func:`id_digest`; False when nothing is staged any more (a problem, and "fail")."""
        if self.problem_count and self.on_invalid == "fail":
            return False  # the job will not be sent: keep checking, stop staging
        count = self._count
        if count and (count >= self.max_requests or self._length + size > self.room_bytes):
            self._close_shard()
            self._first, count, self._offset, self._length = self.accepted, 0, self.offset, 0
            self._ids = IdsDigest()
        self._ids.add_hash(int.from_bytes(digest))
        self.offset += size
        self._length += size
        self._count = count + 1
        self.accepted += 1
        return True

    def _close_shard(self) -> None:
        self.shards.append(
            Shard(
                len(self.shards),
                self._first,
                self._count,
                self._offset,
                self._length,
                self._ids.hexdigest(),
            )
        )

    def finish(self, fingerprint: str, anthropic_version: str) -> Prepared:
        """What pre-flight made of the part; raises ``RequestValidationError`` as
        :func:`prepare` says."""
        problems, count = self.problems, self.problem_count
        if count and (self.on_invalid == "fail" or self.unreadable):
            raise RequestValidationError.from_problems(
                problems, count, anthropic_version=anthropic_version
            )
        if self._count:
            self._close_shard()
            self._count = 0
        if not self.accepted:
            if count:
                raise RequestValidationError.from_problems(
                    problems, count, anthropic_version=anthropic_version
                )
            raise RequestValidationError(
                "the input holds no requests (it is empty, or only blank lines); nothing to submit"
            )
        return Prepared(
            fingerprint=fingerprint,
            request_count=self.accepted,
            shards=self.shards,
            rejected=problems,
            rejected_count=count,
        )


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
    check = validator.check
    seen = CustomIds()
    part = Part(validator.limits, on_invalid, max_reported)
    with Staging() as staging:
        out = staging.output(sink)
        unique, accept, stage = seen.add_digest, part.accept, out.add
        for location, raw in records:
            checked = check(location, raw)
            if isinstance(checked, list):
                part.reject(checked)
                continue
            custom_id, line = checked
            digest = id_digest(custom_id)
            if not unique(digest):
                part.duplicate(location, custom_id)
            elif accept(digest, len(line) + 1):
                stage(line)
        (fingerprint,) = staging.close(out)
    return part.finish(fingerprint, validator.anthropic_version)


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
