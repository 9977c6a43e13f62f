"""The create body: spooled to disk (under the byte bound of ``bodies``), then checked one item
at a time.

A 256 MB body never sits in memory. The scanner walks the spooled file through a sliding text
window, decoding one request item at a time with ``json.JSONDecoder.raw_decode`` and keeping
only its offset, length and custom_id. The window is decoded as latin-1 so that a character
index is a byte offset; UTF-8 validity is checked on the side.
"""

from __future__ import annotations

import codecs
import json
import re
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any

from airflow_batches.api._request_shape import request_faults
from airflow_batches.emulator.errors import APIError, invalid_request
from airflow_batches.emulator.store import BatchFiles
from airflow_batches.emulator.validation import api_message

_WS = re.compile(r"[ \t\n\r]*")


class _NotJSON(ValueError):
    pass


def _no_constants(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON (and the API) does not.
    raise _NotJSON(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constants)
_INDEX = struct.Struct("<QI")
_CHUNK = 1 << 20


async def spool_body(chunks: AsyncIterator[bytes], dest: Path) -> int:
    """Write the body to ``dest``; return its size. ``chunks`` is bounded by its reader
    (``bodies.stream_body``), which stops at the limit with a 413."""
    total = 0
    with dest.open("wb") as fh:
        async for chunk in chunks:
            total += len(chunk)
            fh.write(chunk)
    return total


def _show(text: str) -> str:
    """A latin-1 view of UTF-8 bytes back to what the client sent, for error messages."""
    try:
        return text.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return text


class _Window:
    """A sliding latin-1 window over a file; ``start`` is the byte offset of ``buf[0]``."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self.buf = ""
        self.start = 0
        self.pos = 0
        self.eof = False

    @property
    def offset(self) -> int:
        return self.start + self.pos

    def _fill(self, size: int) -> bool:
        if self.eof:
            return False
        data = self._fh.read(size)
        try:
            self._utf8.decode(data, final=not data)
        except UnicodeDecodeError:
            raise invalid_request("The request body is not valid UTF-8") from None
        if not data:
            self.eof = True
            return False
        if self.pos:
            self.start += self.pos
            self.buf = self.buf[self.pos :]
            self.pos = 0
        self.buf += data.decode("latin-1")
        return True

    def peek(self) -> str | None:
        """The next non-blank character (not consumed), or None at the end of the file."""
        while True:
            match = _WS.match(self.buf, self.pos)
            self.pos = match.end() if match else self.pos
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._fill(_CHUNK):
                return None

    def expect(self, char: str, what: str) -> None:
        if self.peek() != char:
            raise self.syntax_error(f"Expecting {what}")
        self.pos += 1

    def value(self) -> tuple[Any, int, int]:
        """Decode the next JSON value; returns it with its byte offset and length."""
        self.peek()
        while True:
            try:
                obj, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                incomplete = (
                    exc.msg.startswith("Unterminated string") or exc.pos >= len(self.buf) - 6
                )
                if incomplete and self._fill(max(_CHUNK, len(self.buf))):
                    continue
                raise self.syntax_error(exc.msg, self.start + exc.pos) from None
            except _NotJSON as exc:
                raise self.syntax_error(str(exc)) from None
            begin = self.offset
            self.pos = end
            return obj, begin, self.offset - begin

    def syntax_error(self, message: str, at: int | None = None) -> APIError:
        at = self.offset if at is None else at
        return invalid_request(f"The request body is not valid JSON: {message} (byte {at})")


def _check_item(index: int, item: Any, seen: dict[str, int]) -> str:
    """The custom_id of a request item of the API's shape; else the 400 naming the first
    fault (``api._request_shape``, worded by ``validation.api_message``)."""
    where = f"requests.{index}"
    faults = request_faults(item)
    if faults:
        raise invalid_request(api_message(faults[0], at=("requests", index), shown=_show))
    custom_id: str = item["custom_id"]
    first = seen.setdefault(custom_id, index)
    if first != index:
        raise invalid_request(
            f"{where}.custom_id: Duplicate custom_id {custom_id!r} "
            f"(already used by requests.{first}); custom_id must be unique within a batch"
        )
    return custom_id


def scan_body(files: BatchFiles, *, max_requests: int, too_many_error: str) -> int:
    """Check the spooled ``files.body`` and write its index; return the number of requests.

    Raises ``APIError`` naming the item and field of the first structural problem.
    """
    seen: dict[str, int] = {}
    count = 0
    with (
        files.body.open("rb") as fh,
        files.index.open("wb") as index_out,
        files.ids.open("w", encoding="ascii") as ids_out,
    ):
        win = _Window(fh)
        win.expect("{", "'{' (the body must be a JSON object)")
        found = False
        while True:
            if win.peek() == "}" and not found:
                win.pos += 1
                break
            key, _, _ = win.value()
            if not isinstance(key, str):
                raise win.syntax_error("Expecting property name enclosed in double quotes")
            win.expect(":", "':' delimiter")
            if key != "requests":
                raise invalid_request(f"{_show(key)}: Extra inputs are not permitted")
            found = True
            win.expect("[", "'[' (requests: Input should be a valid list)")
            if win.peek() == "]":
                win.pos += 1
            else:
                while True:
                    item, offset, length = win.value()
                    if count >= max_requests:
                        raise APIError(
                            too_many_error,
                            f"requests: too many requests: at most {max_requests} are "
                            "allowed in one batch",
                        )
                    custom_id = _check_item(count, item, seen)
                    del item
                    index_out.write(_INDEX.pack(offset, length))
                    ids_out.write(custom_id + "\n")
                    count += 1
                    char = win.peek()
                    win.pos += 1
                    if char == "]":
                        break
                    if char != ",":
                        raise win.syntax_error("Expecting ',' delimiter")
            char = win.peek()
            win.pos += 1
            if char == "}":
                break
            if char != ",":
                raise win.syntax_error("Expecting ',' delimiter")
        if win.peek() is not None:
            raise win.syntax_error("Extra data")
    if not found:
        raise invalid_request("requests: Field required")
    if count == 0:
        raise invalid_request("requests: List should have at least 1 item after validation")
    return count


class RequestIndex:
    """Where each request item sits in the body: 12 bytes a request, kept packed."""

    def __init__(self, raw: bytes) -> None:
        self._raw = raw

    @classmethod
    def load(cls, files: BatchFiles) -> RequestIndex:
        return cls(files.index.read_bytes())

    def __len__(self) -> int:
        return len(self._raw) // _INDEX.size

    def __getitem__(self, index: int) -> tuple[int, int]:
        offset, length = _INDEX.unpack_from(self._raw, index * _INDEX.size)
        return int(offset), int(length)
