"""Requests in: location-labelled records from a JSONL stream or an in-memory list.

The JSONL reader works on bytes in fixed chunks, so memory does not depend on the input:

- Lines are split on ``\\n`` only. JSON whitespace around a line (a ``\\r`` of CRLF
  included) is dropped; a blank or whitespace-only line is skipped, yet counted, so every
  ``line N`` is the file's own line number.
- A UTF-8 byte-order mark at the very start of the file is dropped (spreadsheet exports write
  one); anywhere else it is an error, reported by the validator.
- gzip data is recognised by its magic bytes and read decompressed, whatever the file's name.
  A file that is UTF-16, UTF-32 or another archive is refused at line 1, with what it is.
- A line longer than ``hold_bytes`` goes to a temporary file instead of memory; a line longer
  than ``max_line_bytes`` (it can never fit a batch) is not kept at all: it is counted to its
  end and reported, with only its first bytes kept to name its custom_id.
"""

from __future__ import annotations

import gzip
import re
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Protocol

from airflow_batches.jobs.prepare._limits import MAX_LINE_BYTES
from airflow_batches.jobs.prepare._request_json import BOM, decode_line

JSON_SPACE = b" \t\r\n"
FILE = "(file)"
"""The field of a problem with the file as a whole (not UTF-8, broken compression): the input
cannot be trusted to be complete, so such a problem fails the job even with
``on_invalid="skip"``."""
HEAD_BYTES = 4096
"""How much of an over-long line is kept, to find its custom_id."""
_CUSTOM_ID = re.compile(rb'"custom_id"\s*:\s*"([A-Za-z0-9_-]{1,64})"')
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x00\x00\xfe\xff", "UTF-32 text (it starts with a UTF-32 byte-order mark)"),
    (b"\xff\xfe\x00\x00", "UTF-32 text (it starts with a UTF-32 byte-order mark)"),
    (b"\xfe\xff", "UTF-16 text (it starts with a UTF-16 byte-order mark)"),
    (b"\xff\xfe", "UTF-16 text (it starts with a UTF-16 byte-order mark)"),
    (b"PK\x03\x04", "a zip archive"),
    (b"BZh", "bzip2-compressed"),
    (b"\xfd7zXZ\x00", "xz-compressed"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed"),
)
_GZIP = b"\x1f\x8b"
_INDEXED = re.compile(r"^\[(\d+)\](.*)$")
_BROKEN_STREAM = (gzip.BadGzipFile, EOFError, zlib.error)


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class Unreadable:
    """A record the reader could not hand over as a line; the validator reports it."""

    field: str
    message: str
    custom_id: str | None = None


def guess_custom_id(data: bytes) -> str | None:
    """The custom_id written in a line that cannot be decoded, if one can be seen."""
    found = _CUSTOM_ID.search(data)
    return found.group(1).decode("ascii") if found else None


def records_from_items(items: Iterable[Any]) -> Iterator[tuple[str, Any]]:
    """Location-labelled requests from an in-memory list (XCom, templated parameter)."""
    for i, item in enumerate(items):
        yield f"request {i}", item


def records_from_text(text: str) -> Iterator[tuple[str, Any]]:
    """Requests from a JSON array rendered as text (a templated ``requests``), read strictly.

    The text is held to the same rules as a JSONL line (``_request_json``): a duplicate key, a lone
    surrogate, NaN or absurd nesting in request 3 is reported as ``request 3``'s problem.
    """
    value, faults = decode_line(text.encode("utf-8", "surrogatepass").strip(JSON_SPACE))
    if faults:
        for fault in faults:
            found = _INDEXED.match(fault.field)
            if found:
                index = int(found.group(1))
                field = found.group(2).removeprefix(".") or "(request)"
                item = value[index] if isinstance(value, list) and index < len(value) else None
                cid = item.get("custom_id") if isinstance(item, dict) else None
                cid = cid if isinstance(cid, str) else None
                yield f"request {index}", Unreadable(field, fault.message, cid)
            else:
                field = "(requests)" if fault.field == "(line)" else fault.field
                yield "requests", Unreadable(field, fault.message)
        return
    if not isinstance(value, list):
        yield "requests", Unreadable("(requests)", "must be a JSON array of request objects")
        return
    yield from records_from_items(value)


def records_from_jsonl(
    stream: Readable,
    *,
    max_line_bytes: int = MAX_LINE_BYTES,
    hold_bytes: int = 32 << 20,
    chunk_size: int = 1 << 20,
) -> Iterator[tuple[str, bytes | Unreadable]]:
    """Location-labelled raw lines (stripped) of a binary JSONL stream; see the module doc."""
    return iter(_LineReader(stream, max_line_bytes, min(hold_bytes, max_line_bytes), chunk_size))


class _LineReader:
    def __init__(
        self, stream: Readable, max_line_bytes: int, hold_bytes: int, chunk_size: int
    ) -> None:
        self.stream: Readable = stream
        self.max_line_bytes = max_line_bytes
        self.hold_bytes = hold_bytes
        self.chunk_size = chunk_size
        self.number = 0
        self._parts: list[bytes] = []
        self._length = 0
        self._spill: IO[bytes] | None = None
        self._head = b""

    def __iter__(self) -> Iterator[tuple[str, bytes | Unreadable]]:
        try:
            first = self._read_start()
            if first.startswith(_GZIP):
                self.stream = gzip.GzipFile(fileobj=_Prefixed(first, self.stream))  # type: ignore[call-overload]
                first = self._read_start()
            if first.startswith(BOM):
                first = first[len(BOM) :]
            refused = _refusal(first)
            if refused:
                yield "line 1", Unreadable(FILE, refused)
                return
            chunk = first
            while chunk:
                yield from self._lines(chunk)
                chunk = self._read()
            if self._length:
                self.number += 1
                record = self._finish()
                if record is not None:
                    yield f"line {self.number}", record
        except _BROKEN_STREAM as exc:
            yield (
                f"line {self.number + 1}",
                Unreadable(
                    FILE,
                    f"the compressed data is broken ({exc}); {self.number} line(s) read before",
                ),
            )
        finally:
            self._drop_spill()

    def _read(self) -> bytes:
        return self.stream.read(self.chunk_size) or b""

    def _read_start(self) -> bytes:
        """The first chunk, at least long enough to tell what the file is (if it is)."""
        first = self._read()
        while 0 < len(first) < 8:
            more = self._read()
            if not more:
                break
            first += more
        return first

    def _lines(self, chunk: bytes) -> list[tuple[str, bytes | Unreadable]]:
        """The records that end in ``chunk``; its unfinished last line is kept for the next."""
        pieces = chunk.split(b"\n")
        last = pieces.pop()
        out: list[tuple[str, bytes | Unreadable]] = []
        number = self.number
        longest = self.max_line_bytes
        for piece in pieces:
            number += 1
            record: bytes | Unreadable | None
            if self._length:
                self._add(piece)
                record = self._finish()
            elif len(piece) > longest:
                record = self._too_long(len(piece), piece[:HEAD_BYTES])
            else:
                record = piece.strip(JSON_SPACE) or None
            if record is not None:
                out.append((f"line {number}", record))
        self.number = number
        if last:
            self._add(last)
        return out

    def _add(self, piece: bytes) -> None:
        """Append to the line being read: in memory, then spilled, then only counted."""
        before = self._length
        self._length += len(piece)
        if before < HEAD_BYTES:
            self._head += piece[: HEAD_BYTES - before]
        if self._length > self.max_line_bytes:
            self._parts = []
            self._drop_spill()
        elif self._spill is not None:
            self._spill.write(piece)
        elif self._length > self.hold_bytes:
            self._spill = tempfile.TemporaryFile(prefix="airflow-batches-line-")  # noqa: SIM115
            for part in self._parts:
                self._spill.write(part)
            self._spill.write(piece)
            self._parts = []
        else:
            self._parts.append(piece)

    def _finish(self) -> bytes | Unreadable | None:
        length, head = self._length, self._head
        self._length, self._head = 0, b""
        if length > self.max_line_bytes:
            return self._too_long(length, head)
        if self._spill is not None:
            self._spill.seek(0)
            line = self._spill.read()
            self._drop_spill()
        else:
            line = b"".join(self._parts)
            self._parts = []
        return line.strip(JSON_SPACE) or None

    def _too_long(self, length: int, head: bytes) -> Unreadable:
        return Unreadable(
            "(line)",
            f"is {length:,} bytes; a request must fit one batch body "
            f"(at most {self.max_line_bytes:,} bytes)",
            guess_custom_id(head),
        )

    def _drop_spill(self) -> None:
        if self._spill is not None:
            self._spill.close()
            self._spill = None


def _refusal(first: bytes) -> str | None:
    for signature, what in _SIGNATURES:
        if first.startswith(signature):
            return f"the file is {what}; give UTF-8 JSONL (optionally gzip-compressed)"
    if len(first) >= 2 and (first[0] == 0 or first[1] == 0):
        return "the file looks like UTF-16 text (NUL bytes between characters); give UTF-8 JSONL"
    return None


class _Prefixed:
    """A stream whose first bytes were already read: ``prefix``, then the rest of ``stream``."""

    def __init__(self, prefix: bytes, stream: Readable) -> None:
        self._prefix = prefix
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        if self._prefix:
            if size < 0:
                data, self._prefix = self._prefix + self._stream.read(), b""
                return data
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            return data
        return self._stream.read(size)
