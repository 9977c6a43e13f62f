"""A job's lookup in the cross-run cache, in memory that does not grow with the job or the
cache, and in time that grows with the cache only by a scan of its index records.

1. The staged requests are read once: each one's key (``CrossRunCache.key``), custom_id hash
   and custom_id are written to a local temporary file in their order, and ``(key, custom_id
   hash, ordinal, custom_id)`` to one of ``ranges`` local files, by the key's first byte
   (``_segments.bucket_runs``). The ordered file is kept beside the staged requests
   (``KEYS_MEMO``): a job recalled from a receipt reads it instead of the staged requests.
2. Range by range, the job's keys of the range are held in a dict, and the index records of
   that range are read from every live segment (``_segments.record_ranges``) and filtered
   against it, record by record in C (``compress`` over ``dict.__contains__``): a record
   costs a few tens of nanoseconds, and only a match costs Python. A request is a *hit* when
   a live record has its key: that very custom_id's when there is one, else the newest
   segment's. Hits go to per-segment local files; a bit per request says which are hits.
3. The staged requests are read again, in order: each miss goes to ``uncached.jsonl`` (in
   parts, one per matrix model, each planned as batches like pre-flight does: ``Part``, and
   fingerprinted), its key to ``keys.jsonl``, and it is shown to the observers (the cost
   estimate sees only what is sent). No request is validated again: these are the job's own
   staged lines.
4. The hits' results are copied (``_hits``), each segment read in the order of its data.
"""

from __future__ import annotations

import hashlib
import struct
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from itertools import compress
from operator import itemgetter
from typing import IO, Any

import msgspec

from airflow_batches.jobs._store import JobStore, StoragePath, atomic_writer, open_to_read
from airflow_batches.jobs.cache._hits import HIT, copy_hits
from airflow_batches.jobs.cache._layout import (
    CACHED_FILE,
    KEY_ONLY,
    KEYS_FILE,
    KEYS_MEMO,
    RECORD,
    UNCACHED_FILE,
    custom_id_hash,
)
from airflow_batches.jobs.cache._segments import Segment, data_size, record_ranges
from airflow_batches.jobs.prepare import (
    Limits,
    Output,
    Part,
    Prepared,
    Staging,
    combine,
    id_digest,
)

__all__ = ["Lookup", "Observer", "replan"]

Observer = Callable[[str, Any, bytes], None]
_JOB = struct.Struct(">24sI64s")
"""A job's request in a range file: key and custom_id hash, ordinal, custom_id (padded)."""
_MEMO = struct.Struct(">24s64s")
"""A request in the job's ordered keys (a lookup's temporary file, and ``KEYS_MEMO``): its key
and custom_id hash, its custom_id (padded). A lookup from the memo reads no staged request."""
_MEMO_FORMAT = b"keys.bin 2\0"
"""Hashed into the memo's header with the cache's identity: a memo of another layout (16-byte
keys, before) is not this one's, and is computed again."""
_TAIL = struct.Struct(">QII")
"""The offset, length and time of an index record (after its key and custom_id hash)."""
_key16 = itemgetter(slice(0, 16))
_OFFSET = (1 << 44) - 1
_LENGTH = (1 << 32) - 1
_PER_RANGE = 1 << 15
"""About how many of the job's requests one range holds in memory."""
_first = itemgetter(0)


class _Params(msgspec.Struct):
    custom_id: str
    params: msgspec.Raw


class _CustomId(msgspec.Struct):
    custom_id: str


_decode_params = msgspec.json.Decoder(_Params).decode
_decode_custom_id = msgspec.json.Decoder(_CustomId).decode
_decode_any = msgspec.json.Decoder().decode
_KEY_LINE = b'{"custom_id":"%s","key":"%s"}\n'
"""A ``KeyLine`` as msgspec writes it (a staged custom_id needs no escaping)."""
_encode = msgspec.json.Encoder().encode


class Lookup:
    """One lookup (see the module docstring); :meth:`run` once."""

    def __init__(
        self,
        *,
        key: Callable[[bytes], tuple[str, bytes]],
        identity: bytes,
        folder: StoragePath,
        segments: list[Segment],
        cutoff: int | None,
        job: JobStore,
        requests_file: str,
        request_count: int,
        part_of: Callable[[str], str] | None,
        limits: Limits,
        observers: Sequence[Observer],
    ) -> None:
        self.key = key
        self.identity = hashlib.sha256(_MEMO_FORMAT + identity).digest()
        self.request_count = request_count
        self.folder = folder
        self.segments = segments
        self.cutoff = cutoff
        self.job = job
        self.requests = job.path(requests_file)
        self.part_of = part_of
        self.limits = limits
        self.observers = tuple(observers)
        if not request_count:  # not told: from the staged bytes, at 100 bytes a request
            request_count = data_size(self.requests) // 100
        ranges = 1
        while ranges < 256 and request_count > ranges * _PER_RANGE:
            ranges *= 2
        self.ranges = ranges
        self.hits = 0
        self.misses = 0
        self.parts: list[int] = []

    def run(self) -> Prepared | None:
        """Write the job's ``cache/`` files; the misses as pre-flight planned them (None when
        there is none)."""
        with ExitStack() as stack:
            keys = stack.enter_context(_temporary())
            memo = self._memo()
            if memo is not None:
                stack.enter_context(memo)
            if not self.segments:  # nothing to find: every request is a miss
                sent = self._misses(memo, bytearray(), keys)
                with atomic_writer(self.job.path(CACHED_FILE)):
                    pass
                if memo is None:
                    self._remember_keys(keys)
                return sent
            runs = [stack.enter_context(_temporary()) for _ in range(self.ranges)]
            count = self._read_keys(keys, runs, memo)
            if memo is None:
                self._remember_keys(keys)
            hits = [stack.enter_context(_temporary()) for _ in self.segments]
            found = bytearray((count + 7) // 8)
            readers = [record_ranges(self.folder, s, self.ranges) for s in self.segments]
            for reader in readers:
                stack.callback(reader.close)  # type: ignore[attr-defined]
            for run in runs:
                self._match(run, readers, hits, found)
            keys.seek(0)
            sent = self._misses(keys, found, every=int.from_bytes(found).bit_count() == count)
            with atomic_writer(self.job.path(CACHED_FILE)) as cached:
                self.hits = copy_hits(self.folder, self.segments, hits, cached)
        return sent

    def _memo(self) -> IO[bytes] | None:
        """The job's keys as an earlier lookup of the same staged requests left them
        (``KEYS_MEMO``), positioned at the first; None if there are none for this cache."""
        memo = self.job.path(KEYS_MEMO)
        if not self.request_count or data_size(memo) != 32 + _MEMO.size * self.request_count:
            return None
        stream: IO[bytes] = memo.open("rb")
        if stream.read(32) != self.identity:
            stream.close()
            return None
        return stream

    def _remember_keys(self, keys: IO[bytes]) -> None:
        """Keep the job's keys beside its staged requests (``KEYS_MEMO``)."""
        if not self.request_count or keys.tell() != _MEMO.size * self.request_count:
            return
        keys.seek(0)
        with atomic_writer(self.job.path(KEYS_MEMO)) as out:
            out.write(self.identity)
            while block := keys.read(1 << 20):
                out.write(block)

    def _read_keys(self, keys: IO[bytes], runs: list[IO[bytes]], memo: IO[bytes] | None) -> int:
        """Write each request's ``_MEMO`` record to ``keys`` in order, and its range record to
        its range's file; from the memo when there is one (no staged request read), else
        computed from the staged requests."""
        shift = 8 - (self.ranges.bit_length() - 1)
        ordinal = 0
        pack = _JOB.pack
        if memo is not None:
            rest = b""
            while block := memo.read(_MEMO.size * 4096):
                block, size = rest + block, len(rest) + len(block)
                whole = size - size % _MEMO.size
                block, rest = block[:whole], block[whole:]
                keys.write(block)
                for key_hash, cid in _MEMO.iter_unpack(block):
                    runs[key_hash[0] >> shift].write(pack(key_hash, ordinal, cid))
                    ordinal += 1
            return ordinal
        key_of, remember = self.key, _MEMO.pack
        with open_to_read(self.requests) as stream:
            for line in stream:
                if not line.strip():
                    continue
                custom_id, key = key_of(line.rstrip(b"\r\n"))
                key_hash, cid = key + custom_id_hash(custom_id), custom_id.encode()
                keys.write(remember(key_hash, cid))
                runs[key[0] >> shift].write(pack(key_hash, ordinal, cid))
                ordinal += 1
        return ordinal

    def _match(
        self,
        run: IO[bytes],
        readers: list[Iterator[list[bytes]]],
        hits: list[IO[bytes]],
        found: bytearray,
    ) -> None:
        """Find the hits of the job's requests of one range (the next of every reader).

        A location is one integer: segment number, offset and length (``_where``)."""
        run.seek(0)
        data = run.read()
        run.close()
        wanted = set(map(_key16, map(_first, _JOB.iter_unpack(data))))
        exact: dict[bytes, int] = {}
        newest: dict[bytes, int] = {}
        known = wanted.__contains__
        cutoff = self.cutoff
        tail = _TAIL.unpack_from
        for number, reader in enumerate(readers):
            for block in next(reader, ()):
                if not wanted:
                    continue
                matched = compress(
                    range(0, len(block), RECORD.size),
                    map(known, map(_first, KEY_ONLY.iter_unpack(block))),
                )
                for at in matched:
                    offset, length, stored = tail(block, at + 24)
                    if cutoff is None or stored >= cutoff:
                        where = number << 76 | offset << 32 | length
                        exact.setdefault(block[at : at + 24], where)
                        newest.setdefault(block[at : at + 16], where)
        del wanted
        if not newest:
            return
        pending: list[list[bytes]] = [[] for _ in hits]
        pack = HIT.pack
        for key_and_id, ordinal, custom_id in _JOB.iter_unpack(data):
            where = exact.get(key_and_id) or newest.get(key_and_id[:16])
            if where is not None:
                pending[where >> 76].append(
                    pack((where >> 32) & _OFFSET, where & _LENGTH, custom_id)
                )
                found[ordinal >> 3] |= 1 << (ordinal & 7)
        for out, records in zip(hits, pending, strict=True):
            out.write(b"".join(records))

    def _misses(
        self,
        keys: IO[bytes] | None,
        found: bytearray,
        computed: IO[bytes] | None = None,
        *,
        every: bool = False,
    ) -> Prepared | None:
        """Stage the misses (see the module docstring); ``keys`` holds each request's key in
        order (None: they are computed here, into ``computed``); ``found`` has a bit set for
        each hit (empty: none is); ``every``: each request is a hit (the requests are not
        read again)."""
        parts: list[Prepared] = []
        with ExitStack() as stack:
            uncached = stack.enter_context(atomic_writer(self.job.path(UNCACHED_FILE)))
            out_keys = stack.enter_context(atomic_writer(self.job.path(KEYS_FILE)))
            staging = stack.enter_context(Staging())
            current: tuple[str, Part, Output] | None = None
            ordinal = written = 0
            # Every request a hit: none to stage, and the staged requests are not even opened.
            for line in () if every else stack.enter_context(open_to_read(self.requests)):
                if not line.strip():
                    continue
                line = line.rstrip(b"\r\n")
                if keys is None:
                    custom_id, key = self.key(line)
                    if computed is not None:
                        computed.write(
                            _MEMO.pack(key + custom_id_hash(custom_id), custom_id.encode())
                        )
                else:
                    key = keys.read(_MEMO.size)[:16]
                    hit = found and found[ordinal >> 3] >> (ordinal & 7) & 1
                    ordinal += 1
                    if hit:
                        continue
                    custom_id = _decode_custom_id(line).custom_id
                this = self.part_of(custom_id) if self.part_of is not None else ""
                if current is None or this != current[0]:
                    if current is not None:
                        parts.append(self._close_part(staging, current))
                    self.parts.append(written)
                    part = Part(self.limits, "fail", 0)
                    current = (this, part, staging.output(uncached))
                if current[1].accept(id_digest(custom_id), len(line) + 1):
                    current[2].add(line)
                written += len(line) + 1
                out_keys.write(_KEY_LINE % (custom_id.encode(), key.hex().encode()))
                if self.observers:
                    params = _decode_any(_decode_params(line).params)
                    for observe in self.observers:
                        observe(custom_id, params, line)
                self.misses += 1
            if current is not None:
                parts.append(self._close_part(staging, current))
            staging.close()
        return combine(parts) if parts else None

    def _close_part(self, staging: Staging, current: tuple[str, Part, Output]) -> Prepared:
        _, part, out = current
        staging.sync(out)
        return part.finish(out.digest.hexdigest(), "")


def _temporary() -> IO[bytes]:
    return tempfile.TemporaryFile(prefix="airflow-batches-lookup-")


def replan(
    path: StoragePath, starts: list[int], limits: Limits, observers: Sequence[Observer]
) -> Prepared | None:
    """The misses of an earlier lookup (``uncached.jsonl``, parts beginning at ``starts``)
    planned and fingerprinted again, and shown to ``observers``: what a task retry sends."""
    parts: list[Prepared] = []
    bounds = [*(starts or [0])[1:], None]
    with open_to_read(path) as stream:
        at = 0
        for end in bounds:
            part = Part(limits, "fail", 0)
            digest = hashlib.sha256()
            for line in stream:
                at += len(line)
                line = line.rstrip(b"\r\n")
                request = _decode_params(line)
                part.accept(id_digest(request.custom_id), len(line) + 1)
                digest.update(line + b"\n")
                if observers:
                    params = _decode_any(request.params)
                    for observe in observers:
                        observe(request.custom_id, params, line)
                if end is not None and at >= end:
                    break
            if part.accepted:
                parts.append(part.finish(digest.hexdigest(), ""))
    return combine(parts) if parts else None
