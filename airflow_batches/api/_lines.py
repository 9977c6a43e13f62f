"""Split a stream of byte chunks into lines, whatever the chunk boundaries.

Works on bytes: a chunk may end in the middle of a line or of a UTF-8 character, and neither
matters because ``\\n`` never occurs inside a multi-byte UTF-8 sequence. Lines are returned
without their terminator (and a ``\r`` before it); blank lines are dropped (JSONL has none,
but a trailing newline or a CRLF must not produce an empty record), unless ``keep_blank`` is
set: a reader that numbers lines as they stand in the file keeps them (as ``b""``) to count
them.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator


class LineDecoder:
    """Incremental splitter shared by the sync and async readers."""

    __slots__ = ("_keep_blank", "_pending")

    def __init__(self, *, keep_blank: bool = False) -> None:
        self._pending: list[bytes] = []
        self._keep_blank = keep_blank

    def feed(self, chunk: bytes) -> list[bytes]:
        if not chunk:
            return []
        parts = chunk.split(b"\n")
        if len(parts) == 1:
            self._pending.append(chunk)
            return []
        if self._pending:
            parts[0] = b"".join((*self._pending, parts[0]))
        last = parts.pop()
        self._pending = [last] if last else []
        if b"\r" in chunk or parts[0].endswith(b"\r"):
            parts = [_strip_cr(line) for line in parts]
        return parts if self._keep_blank else [line for line in parts if line]

    def flush(self) -> list[bytes]:
        rest = _strip_cr(b"".join(self._pending))
        self._pending = []
        return [rest] if rest else []


def _strip_cr(line: bytes) -> bytes:
    return line[:-1] if line.endswith(b"\r") else line


def iter_lines(chunks: Iterable[bytes], *, keep_blank: bool = False) -> Iterator[bytes]:
    decoder = LineDecoder(keep_blank=keep_blank)
    for chunk in chunks:
        yield from decoder.feed(chunk)
    yield from decoder.flush()


async def aiter_lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    decoder = LineDecoder()
    async for chunk in chunks:
        for line in decoder.feed(chunk):
            yield line
    for line in decoder.flush():
        yield line
