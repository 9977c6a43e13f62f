"""The bounds of a results download: what one decoding step, one line and one body may hold.

A compressed answer is inflated a bounded step at a time, whatever its ratio
(:class:`BoundedDecoder`); a line may be at most the client's ``max_line_bytes``; a body may
hold its batch's request count in lines, plus :func:`extra_lines`.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

from airflow_batches.api._errors import ResponseValidationError, ResultsTooLargeError

__all__ = ["DECODED_CHUNK", "BoundedDecoder", "extra_lines", "line_too_long"]

DECODED_CHUNK = 1 << 20
"""The most bytes one step of inflating a compressed answer produces (1 MiB)."""


class BoundedDecoder:
    """Undoes an answer's content-encoding in steps of at most ``chunk`` bytes.

    httpx would inflate each chunk read from the network whole; this inflates what it is fed
    a bounded step at a time, so memory does not depend on the compression ratio. Identity
    chunks pass as they are (a network read is bounded already). ``gzip`` (with several
    members) and ``deflate`` (zlib-wrapped or raw, as httpx reads it) are decoded; any other
    encoding, which the client never asks for, is refused.
    """

    def __init__(self, encoding: str | None, batch_id: str, chunk: int = DECODED_CHUNK) -> None:
        self.batch_id = batch_id
        self.chunk = chunk
        self.encoding = encoding
        self._inflate: Any = None
        self._raw_deflate_tried = False
        if encoding in ("gzip", "x-gzip"):
            self._inflate = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif encoding == "deflate":
            self._inflate = zlib.decompressobj()
        elif encoding is not None:
            raise ResponseValidationError(
                f"results of batch {batch_id}: the answer's content-encoding {encoding!r} is "
                "not one the client asked for (gzip, deflate)"
            )

    def decode(self, data: bytes) -> Iterator[bytes]:
        inflate = self._inflate
        if inflate is None:
            yield data
            return
        full = True
        while data or full:
            try:
                out = inflate.decompress(data, self.chunk)
            except zlib.error as exc:
                if self.encoding == "deflate" and not self._raw_deflate_tried:
                    # No zlib header: raw deflate, as some servers send it (httpx reads both).
                    self._raw_deflate_tried = True
                    self._inflate = inflate = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise self._corrupt(exc) from None
            self._raw_deflate_tried = True  # the header was read: no switching later
            data, full = inflate.unconsumed_tail, len(out) == self.chunk
            if out:
                yield out
            if inflate.eof:
                rest = inflate.unused_data
                if not rest or self.encoding == "deflate":
                    return  # trailing bytes after the stream end are ignored, as httpx does
                self._inflate = inflate = zlib.decompressobj(zlib.MAX_WBITS | 16)
                data, full = rest, True  # the next gzip member

    def flush(self) -> bytes:
        """The end of the decoded body; raises if a compressed body stopped before its end
        (every step of ``decode`` ran until its output was short, so nothing is left)."""
        inflate = self._inflate
        if inflate is None:
            return b""
        if not inflate.eof:
            raise ResponseValidationError(
                f"results of batch {self.batch_id}: the {self.encoding} answer ends before "
                "its compressed stream does"
            )
        return bytes(inflate.flush())

    def _corrupt(self, exc: zlib.error) -> ResponseValidationError:
        return ResponseValidationError(
            f"results of batch {self.batch_id}: the {self.encoding} answer does not decode ({exc})"
        )


def extra_lines(requests: int) -> int:
    """Lines a results body may hold beyond its batch's request count before the download
    stops: 10, plus one per thousand requests. Room for what the readers tolerate (blank
    lines, a line replayed byte for byte); a body longer than that is not the batch's."""
    return 10 + requests // 1000


def line_too_long(batch_id: str, number: int, limit: int) -> ResultsTooLargeError:
    return ResultsTooLargeError(
        f"results of batch {batch_id}: line {number} is longer than max_line_bytes "
        f"({limit:,} bytes); the download was stopped there. Raise max_line_bytes (a client "
        "option, the connection's extra, or FetchResultsOperator's max_line_bytes) if the "
        "batch's answers are that long",
        batch_id=batch_id,
    )
