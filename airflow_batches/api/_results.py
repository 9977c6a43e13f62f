"""Results downloads: the open stream, and a download that survives a connection cut mid-body.

Opening the results is retried like every call (5xx, 529, 429 with ``retry-after``,
connection errors before the answer) and raises once the client's retries are spent. A cut
*mid-body* is another matter: lines have already been handed out, so with ``resumes=0`` (the
default) it surfaces as ``APIConnectionError``, as it always has.

**Resuming.** ``iter_result_bytes(batch, resumes=N)``, ``iter_result_lines(...)`` and
``results(...)`` (the same on ``Client`` and ``AsyncClient``) survive cuts: every byte is
handed out exactly once, in whole lines, and a cut costs one of ``N`` resumes. The budget
counts cuts *in a row without progress*: a cut after at least one more line was read starts
the count again, so a long download on a flaky link finishes while a server that always
fails at the same place does not. After a cut the download waits (the client's backoff for
that count), then opens the results again (with the usual retries of an open):

1. with ``Range: bytes=D-``, ``D`` being the bytes of whole lines handed out (a partial last
   line is dropped and read again), plus ``If-Range`` when the first answer had a strong
   ``ETag``. A 206 is used only with ``Content-Range: bytes D-…/T`` and no content-encoding;
2. otherwise (the server ignored the range with a 200, answered 416, sent another range, or
   the first answer was compressed, so offsets into it mean nothing), from the beginning:
   the first ``D`` bytes are read again, checked against a CRC-32 of what was handed out,
   and dropped.

If the bytes read again differ, or the total ``T`` differs from the first answer's, it raises
``ResultsChangedError``: nothing wrong was handed out, but the caller must start its read of
that batch over, discarding what it made of it. When the resumes are spent, the last cut is
raised as ``APIConnectionError`` naming the batch and the bytes read. Against a server that
ignores ranges (the real API's support is unknown; the emulator honours them) a cut costs a
re-read of what was already read, never a wrong or repeated line.

**Bounds** (``_bounds``). Whatever the server sends, a download holds a bounded amount of it.
A compressed answer (``gzip`` or ``deflate``, the only encodings asked for) is inflated here,
at most ``DECODED_CHUNK`` bytes at a time, never by httpx in one go (a few KiB of gzip can
inflate to gigabytes). A line longer than the client's ``max_line_bytes`` (64 MiB unless
set), or a body holding more lines than the batch has requests (plus ``extra_lines``), stops
the download with ``ResultsTooLargeError`` naming the batch and the line, before that line is
handed out. A stream opened by hand bounds its lines the same way (numbered in that answer).

**By hand.** ``stream_results(batch, offset=D, if_range=etag)`` opens one answer;
``stream.offset`` says where its bytes start in the whole results: ``D`` when the server
honoured the range (checked as in 1.), ``0`` when it sent everything (the caller discards
what it had, or skips ``D`` bytes). ``stream.total`` is the whole length when known,
``stream.etag`` the strong validator to pass as ``if_range``, ``stream.encoding`` the
content-encoding. ``ResultsDownload`` is the I/O-free state machine both clients drive; it
can drive another loop (one writing straight to a file, say).
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pydantic

from airflow_batches.api._bounds import DECODED_CHUNK, BoundedDecoder, extra_lines, line_too_long
from airflow_batches.api._errors import (
    APIConnectionError,
    ResponseValidationError,
    ResultsChangedError,
    ResultsTooLargeError,
    connection_error_from,
)
from airflow_batches.api._lines import LineTooLong, aiter_lines, count_sparse, iter_lines
from airflow_batches.api._models import (
    RESULT_LINE_ADAPTER,
    BatchResultLine,
    MessageBatch,
    problems,
)
from airflow_batches.api._retry import RetryPolicy, retry_delay
from airflow_batches.api._settings import DEFAULT_MAX_LINE_BYTES

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)


def parse_result_line(batch_id: str, number: int, line: bytes) -> BatchResultLine:
    try:
        return RESULT_LINE_ADAPTER.validate_json(line)
    except pydantic.ValidationError as exc:
        # Neither the line nor its input goes into the message: it may be megabytes long.
        raise ResponseValidationError(
            f"results of batch {batch_id}, line {number}: not a result line: {problems(exc)}"
        ) from None


def content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """``(first, last, total)`` of a ``Content-Range: bytes first-last/total`` header.

    ``total`` is None for ``*``; None for a missing, malformed or impossible range.
    """
    match = _CONTENT_RANGE.fullmatch((value or "").strip())
    if match is None:
        return None
    first, last = int(match[1]), int(match[2])
    total = None if match[3] == "*" else int(match[3])
    if last < first or (total is not None and last >= total):
        return None
    return first, last, total


def content_encoding(response: httpx.Response) -> str | None:
    value = response.headers.get("content-encoding", "").strip().lower()
    return None if value in ("", "identity") else value


def body_start(response: httpx.Response, offset: int) -> int | None:
    """Where the body of an answer to a results request from ``offset`` starts in the results.

    ``offset`` for a 206 whose ``Content-Range`` starts there, unencoded; 0 for a 200 (the
    whole results); None for an answer that cannot be used (a 416, another range, an encoded
    206): ask again without a range.
    """
    if offset == 0 or response.status_code == 200:
        return 0
    if response.status_code != 206 or content_encoding(response) is not None:
        return None
    parsed = content_range(response.headers.get("content-range"))
    return offset if parsed is not None and parsed[0] == offset else None


def body_total(response: httpx.Response) -> int | None:
    """The length of the whole results, when the answer tells it (unencoded answers only)."""
    if content_encoding(response) is not None:
        return None
    if response.status_code == 206:
        parsed = content_range(response.headers.get("content-range"))
        return parsed[2] if parsed else None
    length = response.headers.get("content-length", "")
    return int(length) if length.isdigit() else None


def strong_etag(response: httpx.Response) -> str | None:
    etag = response.headers.get("etag", "").strip()
    return etag if etag.startswith('"') else None


class _Stream:
    def __init__(
        self,
        batch: MessageBatch,
        response: httpx.Response,
        *,
        offset: int = 0,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        self.batch = batch
        self.response = response
        self.offset = offset
        """Where this answer's first byte is in the whole results (see the module docstring)."""
        self.max_line_bytes = max_line_bytes
        """The longest line ``iter_lines`` hands out (numbered within this answer)."""
        self.total = body_total(response)
        self.etag = strong_etag(response)
        self.encoding = content_encoding(response)
        """The answer's content-encoding; the bytes read are decoded, so ranges do not apply."""


class ResultsStream(_Stream):
    """An open results download (sync). Iterate once, with one of the three views."""

    def iter_bytes(self, chunk_size: int | None = None) -> Iterator[bytes]:
        """The body, decoded; a compressed one in steps of at most ``chunk_size`` bytes
        (``DECODED_CHUNK``), see ``BoundedDecoder``."""
        if self.response.is_stream_consumed:  # read whole before (a mock's answer)
            yield self.response.content
            return
        decoder = BoundedDecoder(self.encoding, self.batch.id, chunk_size or DECODED_CHUNK)
        try:
            for raw in self.response.iter_raw():
                yield from decoder.decode(raw)
        except httpx.TransportError as exc:
            raise connection_error_from(exc, self.response.request) from exc
        if tail := decoder.flush():
            yield tail

    def iter_lines(self) -> Iterator[bytes]:
        try:
            yield from iter_lines(self.iter_bytes(), max_line_bytes=self.max_line_bytes)
        except LineTooLong as exc:
            raise line_too_long(self.batch.id, exc.number, exc.limit) from None

    def iter_results(self) -> Iterator[BatchResultLine]:
        for number, line in enumerate(self.iter_lines(), start=1):
            yield parse_result_line(self.batch.id, number, line)


class AsyncResultsStream(_Stream):
    """An open results download (async)."""

    async def aiter_bytes(self, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        if self.response.is_stream_consumed:  # read whole before (a mock's answer)
            yield self.response.content
            return
        decoder = BoundedDecoder(self.encoding, self.batch.id, chunk_size or DECODED_CHUNK)
        try:
            async for raw in self.response.aiter_raw():
                for chunk in decoder.decode(raw):
                    yield chunk
        except httpx.TransportError as exc:
            raise connection_error_from(exc, self.response.request) from exc
        if tail := decoder.flush():
            yield tail

    async def aiter_lines(self) -> AsyncIterator[bytes]:
        try:
            async for line in aiter_lines(self.aiter_bytes(), max_line_bytes=self.max_line_bytes):
                yield line
        except LineTooLong as exc:
            raise line_too_long(self.batch.id, exc.number, exc.limit) from None

    async def aiter_results(self) -> AsyncIterator[BatchResultLine]:
        number = 0
        async for line in self.aiter_lines():
            number += 1
            yield parse_result_line(self.batch.id, number, line)


class ResultsDownload:
    """The state of one results download across the answers it takes. No I/O.

    A loop opens ``stream_results(batch, offset=..., if_range=...)`` with ``reopen()``, calls
    ``begin(stream)``, passes every chunk through ``feed`` and hands out what it returns, then
    hands out ``finish()``. On ``APIConnectionError`` while reading, it sleeps ``cut(error)``
    seconds (which raises when the budget is spent) and opens again.
    """

    def __init__(
        self,
        batch: MessageBatch,
        *,
        resumes: int,
        policy: RetryPolicy | None = None,
        rand: Callable[[], float] = random.random,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        if resumes < 0:
            raise ValueError(f"resumes must be >= 0, got {resumes}")
        self.batch = batch
        self.resumes = resumes
        self.max_line_bytes = max_line_bytes
        requests = batch.request_counts.total
        self.max_lines = requests + extra_lines(requests)
        self.lines = 0
        """Lines handed out (counted by their newlines, blank ones included)."""
        self._tail_bytes = 0
        self.policy = policy or RetryPolicy()
        self._rand = rand
        self.delivered = 0
        """Bytes handed out, always whole lines."""
        self.total: int | None = None
        self.cuts = 0
        """Cuts in a row without progress."""
        self._delivered_at_cut = -1
        self._etag: str | None = None
        self._ranges = True
        self._url = ""
        self._tail: list[bytes] = []
        # Only a restart from byte 0 needs a checksum of what was handed out, and there is no
        # restart without resumes. CRC-32 (with the total length) is there to notice a server
        # sending other bytes, not an adversary, at a fraction of the cost of a digest.
        self._crc: int | None = 0 if resumes else None
        self._skip = 0
        self._check = 0

    def reopen(self) -> tuple[int, str | None]:
        """``(offset, if_range)`` for the next ``stream_results``."""
        if self.delivered and self._ranges:
            return self.delivered, self._etag
        return 0, None

    def begin(self, stream: ResultsStream | AsyncResultsStream) -> None:
        self._tail, self._tail_bytes = [], 0
        self._url = str(stream.response.request.url)
        if not self.delivered:
            # Nothing handed out yet: whatever this answer is, it is the one to follow.
            self.total, self._etag = stream.total, stream.etag
            self._ranges = stream.encoding is None
            return
        if stream.total is not None and self.total is not None and stream.total != self.total:
            raise ResultsChangedError(
                f"results of batch {self.batch.id}: the answer after a cut says they are "
                f"{stream.total} bytes long, the first said {self.total}",
                batch_id=self.batch.id,
            )
        if stream.offset != self.delivered:
            self._skip, self._check = self.delivered, 0

    def feed(self, chunk: bytes) -> bytes:
        """The bytes of ``chunk`` to hand out now: whole lines only, never twice."""
        if self._skip:
            chunk = self._verify(chunk)
        end = chunk.rfind(b"\n") + 1
        if not end:
            if chunk:
                self._tail.append(chunk)
                self._tail_bytes += len(chunk)
                if self._tail_bytes > self.max_line_bytes:
                    raise self._too_long(self.lines + 1)
            return b""
        if self._tail_bytes + end > self.max_line_bytes:
            self._check_line_lengths(chunk, end)
        out = b"".join((*self._tail, chunk[:end])) if self._tail else chunk[:end]
        self._tail = [chunk[end:]] if end < len(chunk) else []
        self._tail_bytes = len(chunk) - end
        if self._tail_bytes > self.max_line_bytes:
            raise self._too_long(self.lines + count_sparse(out, b"\n") + 1)
        self._count(count_sparse(out, b"\n"))
        self._commit(out)
        return out

    def finish(self) -> bytes:
        """The last line when it has no newline; raises if the answer ended early."""
        if self._skip:
            raise ResultsChangedError(
                f"results of batch {self.batch.id}: read again from the start after a cut, "
                f"they end within the {self.delivered} bytes already read",
                batch_id=self.batch.id,
            )
        tail = b"".join(self._tail)
        self._tail, self._tail_bytes = [], 0
        if tail:
            self._count(1)
        if self.total is not None and self.delivered + len(tail) != self.total:
            # A body ended by closing the connection looks complete to HTTP: it is a cut.
            raise APIConnectionError(
                f"results of batch {self.batch.id}: the answer ended after "
                f"{self.delivered + len(tail)} of {self.total} bytes",
                method="GET",
                url=self._url,
            )
        self._commit(tail)
        return tail

    def cut(self, error: APIConnectionError) -> float:
        """Seconds to wait before opening again after ``error`` mid-body; raises when spent."""
        self._tail, self._tail_bytes, self._skip, self._check = [], 0, 0, 0
        if self.delivered > self._delivered_at_cut:
            self.cuts = 0
        self._delivered_at_cut = self.delivered
        self.cuts += 1
        if self.cuts <= self.resumes:
            return retry_delay(self.cuts - 1, None, self.policy, rand=self._rand)
        if not self.resumes:
            raise error
        of = f" of {self.total}" if self.total is not None else ""
        raise APIConnectionError(
            f"results of batch {self.batch.id}: the download was cut {self.cuts} times "
            f"without progress ({self.delivered}{of} bytes read); last: {error.message}",
            method=error.method,
            url=error.url,
        ) from error

    def _check_line_lengths(self, chunk: bytes, end: int) -> None:
        """Raise if a line ending in ``chunk[:end]`` is longer than ``max_line_bytes`` (only
        called when the pending bytes and ``chunk[:end]`` together are)."""
        start, length, number = 0, self._tail_bytes, self.lines
        while start < end:
            stop = chunk.index(b"\n", start)
            number += 1
            if length + stop - start > self.max_line_bytes:
                raise self._too_long(number)
            start, length = stop + 1, 0

    def _count(self, lines: int) -> None:
        self.lines += lines
        if self.lines > self.max_lines:
            requests = self.batch.request_counts.total
            raise ResultsTooLargeError(
                f"results of batch {self.batch.id}: line {self.max_lines + 1} is past the "
                f"{self.max_lines} lines its {requests} request(s) can have (the request "
                f"count, plus {self.max_lines - requests} for blank or repeated lines); the "
                "download was stopped there",
                batch_id=self.batch.id,
            )

    def _too_long(self, number: int) -> ResultsTooLargeError:
        return line_too_long(self.batch.id, number, self.max_line_bytes)

    def _commit(self, out: bytes) -> None:
        self.delivered += len(out)
        if self._crc is not None:
            self._crc = zlib.crc32(out, self._crc)

    def _verify(self, chunk: bytes) -> bytes:
        seen = chunk[: self._skip]
        self._check = zlib.crc32(seen, self._check)
        self._skip -= len(seen)
        if not self._skip and self._check != self._crc:
            raise ResultsChangedError(
                f"results of batch {self.batch.id}: read again from the start after a cut, "
                f"their first {self.delivered} bytes differ from those already read",
                batch_id=self.batch.id,
            )
        return chunk[len(seen) :]
