"""The hits' results copied into the job's ``cached.jsonl``, each segment read in the order
of its data (never to and fro: on object storage a backward seek is a new request).

A lookup leaves, per segment, a local file of ``(offset, length, custom_id)`` in no order.
Up to :data:`_SORTED` of them are sorted in memory; more are first cut into runs of the
segment's data by offset, each sorted in its turn. Each stored line becomes
``{"custom_id", "result", "cached_from": {"batch_id", "custom_id"}}`` by splicing its bytes
(its ``result`` is never decoded), as msgspec would have written it.
"""

from __future__ import annotations

import re
import struct
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from typing import IO

import msgspec

from airflow_batches.api import BatchesError
from airflow_batches.jobs._store import StoragePath, child, open_to_read
from airflow_batches.jobs.cache._layout import StoredLine
from airflow_batches.jobs.cache._segments import Segment, data_size

__all__ = ["cached_line", "copy_hits"]

HIT = struct.Struct(">QI64s")
"""A hit in a lookup's per-segment file: offset and length of the stored line, the custom_id
that asked (padded with NULs)."""
_OFFSET = struct.Struct(">Q68x")
"""A hit's offset alone (the head of :data:`HIT`)."""
_SORTED = 50_000
_decode_stored = msgspec.json.Decoder(StoredLine).decode


class _Source(msgspec.Struct):
    batch_id: str
    custom_id: str


class _CachedLine(msgspec.Struct):
    custom_id: str
    result: msgspec.Raw
    cached_from: _Source


_encode = msgspec.json.Encoder().encode


def copy_hits(
    folder: StoragePath, segments: list[Segment], hits: list[IO[bytes]], out: IO[bytes]
) -> int:
    """Write every hit's result to ``out``; how many."""
    count = 0
    for segment, found in zip(segments, hits, strict=True):
        size = found.tell()
        if not size:
            continue
        found.seek(0)
        try:
            stream = open_to_read(child(folder, f"{segment.name}.jsonl"))
        except FileNotFoundError:
            raise _vanished(segment) from None
        with stream:
            at = 0
            span = segment.data_bytes or data_size(child(folder, f"{segment.name}.jsonl"))
            for run in _in_order(found, size // HIT.size, span):
                lines = []
                for offset, length, custom_id in run:
                    if offset != at:
                        stream.seek(offset)
                    data = stream.read(length)
                    if len(data) != length:
                        raise _vanished(segment)
                    at = offset + length
                    lines.append(cached_line(custom_id.rstrip(b"\0"), data))
                    if len(lines) == 4096:
                        out.write(b"".join(lines))
                        count += len(lines)
                        lines = []
                out.write(b"".join(lines))
                count += len(lines)
    return count


def _vanished(segment: Segment) -> BatchesError:
    return BatchesError(
        f"the cross-run cache's segment {segment.name} was cut short or deleted while this "
        "lookup read it (a compaction deletes what it replaced only after its grace period: "
        "was it shortened, or the file changed?); retry the task to look up again"
    )


def _in_order(found: IO[bytes], count: int, span: int) -> Iterator[list[tuple[int, int, bytes]]]:
    """The hits of one segment (``span`` bytes of data) by offset, in sorted runs of at most
    about :data:`_SORTED`."""
    if count <= _SORTED:
        yield _by_offset(found.read())
        return
    span = max(span, 1)
    runs = count // _SORTED + 1
    size = HIT.size
    with ExitStack() as stack:
        cuts = [stack.enter_context(_temporary()) for _ in range(runs)]
        while block := found.read(size * 8192):  # its slices (600 KB) wait in parts
            parts: list[list[bytes]] = [[] for _ in cuts]
            offsets = _OFFSET.iter_unpack(block)
            for at, (offset,) in zip(range(0, len(block), size), offsets, strict=True):
                parts[min(offset * runs // span, runs - 1)].append(block[at : at + size])
            for cut, part in zip(cuts, parts, strict=True):
                cut.write(b"".join(part))
        for cut in cuts:
            cut.seek(0)
            yield _by_offset(cut.read())


def _by_offset(data: bytes) -> list[tuple[int, int, bytes]]:
    """The hits packed in ``data``, by offset (stable: hits of one stored line stay in the
    lookup's order). Sorting the offsets alone, then picking the records, costs a third of
    sorting the records (their tuples compare member by member)."""
    records = list(HIT.iter_unpack(data))
    offsets = [offset for offset, _, _ in records]
    return [records[i] for i in sorted(range(len(records)), key=offsets.__getitem__)]


def cached_line(custom_id: bytes, stored: bytes) -> bytes:
    """The ``cached.jsonl`` line of a stored line (its newline included) answering
    ``custom_id`` (a staged request's: the API's pattern, nothing to escape)."""
    found = _LAID_OUT.match(stored)
    if found is not None and stored.endswith(b"}\n"):
        old, batch = found.group(1, 2)
        return _CACHED % (custom_id, stored[found.end() : -2], batch, old)
    entry = _decode_stored(stored)
    source = _Source(entry.batch_id, entry.custom_id)
    return _encode(_CachedLine(custom_id.decode(), entry.result, source)) + b"\n"


_CACHED = b'{"custom_id":"%s","result":%s,"cached_from":{"batch_id":"%s","custom_id":"%s"}}\n'
_LAID_OUT = re.compile(
    rb'\{"key":"[0-9a-f]{32}","custom_id":"([A-Za-z0-9_-]{1,64})","batch_id":"([A-Za-z0-9_-]{1,200})"'
    rb'(?:,"stored":[0-9]{1,20})?,"result":'
)
"""A stored line as msgspec writes ``StoredLine``, in this release and the last: its
``result`` is then spliced, never decoded (else the line is decoded)."""


def _temporary() -> IO[bytes]:
    return tempfile.TemporaryFile(prefix="airflow-batches-hits-")
