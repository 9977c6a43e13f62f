"""The cross-run cache: a request answered before is answered from that result, not sent again.

Opt-in (``SubmitBatchOperator(cache_path=...)``, a folder on shared storage that every run of
every DAG using it may share). Two requests are *identical* when their params after defaults
(model included), the endpoint that answers them (:func:`endpoint_identity`: the API's origin
and base path, and the workspace when the connection names one), the connection's
``anthropic-version`` and its betas are the same: the key is the BLAKE2b-128 of those, the
params encoded with sorted keys (so the order of keys in a file or a dict does not matter).
custom_ids are not part of it. An answer of the emulator is therefore never a hit for the real
API, nor one gateway's for another's. Only ``succeeded`` results are stored and reused;
errored, expired and canceled requests are always sent again.

**Layout** (``<cache_path>/v2/``; the ``v1/`` folder of releases whose keys did not name the
endpoint is never read, so upgrading costs one night of misses, never a wrong hit; delete it
when convenient): append-only *segments*, one per fetch that stored new
results, never rewritten, so concurrent runs never lose each other's writes:

* ``<segment>.jsonl``: one line per stored result,
  ``{"key", "custom_id", "batch_id", "result"}`` (the custom_id and batch that answered it);
* ``<segment>.keys``: fixed-width records (key 16 bytes, BLAKE2b-64 of the custom_id 8,
  offset 8, length 4) into the ``.jsonl``, written once it is complete: a segment without one
  is not read.

**At submission** (:meth:`CrossRunCache.plan`), after pre-flight: every segment's keys are
loaded into a ``DiskIndex`` (``jobs._index``) (36 bytes read per cached result; memory stays flat),
the staged requests are streamed once, and each is either a *hit* (the result stored for the
same params, that very custom_id's first when there is one) or a *miss*. The job's folder
then holds, under ``cache/``: ``cached.jsonl`` (the hits' results, each with this job's
custom_id and ``"cached_from": {"batch_id", "custom_id"}``), ``uncached.jsonl`` (the misses:
only these are submitted), ``keys.jsonl`` (the misses' keys, for storing their results) and
``plan.json`` (the counts), which a task retry reuses instead of looking again, so a retry
never changes what is sent. An unchanged eval run again is all hits: no create call at all.

**At the fetch** (:class:`CacheWriter`): every succeeded line of the job's batches whose
request was a miss is appended to a new segment; the manifest counts the hits, the results
stored and the spend avoided (the hits' usage at batch prices).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from typing import IO, Any
from urllib.parse import urlsplit

import msgspec
from pydantic import BaseModel, ConfigDict

from airflow_batches.jobs._descriptor import job_key
from airflow_batches.jobs._index import DiskIndex
from airflow_batches.jobs._store import JobStore, StoragePath, atomic_writer, child, fresh
from airflow_batches.jobs.cache._layout import (
    CACHE_FOLDER,
    CACHED_FILE,
    KEYS_FILE,
    KEYS_RECORD,
    PLAN_FILE,
    UNCACHED_FILE,
    VERSION,
    KeyLine,
    StoredLine,
    custom_id_hash,
)
from airflow_batches.jobs.cache._writer import CacheWriter
from airflow_batches.jobs.prepare import (
    REQUESTS_FILE,
    Parts,
    RequestValidator,
    Staged,
    stage_requests,
)

__all__ = [
    "CACHE_FOLDER",
    "CacheInfo",
    "CacheStep",
    "CrossRunCache",
    "endpoint_identity",
    "request_cache_key",
]

_LOCATION = struct.Struct(">IQI")


class _Params(msgspec.Struct):
    custom_id: str
    params: msgspec.Raw


class _Source(msgspec.Struct):
    batch_id: str
    custom_id: str


class _CachedLine(msgspec.Struct):
    custom_id: str
    result: msgspec.Raw
    cached_from: _Source


_decode_params = msgspec.json.Decoder(_Params).decode
_decode_stored = msgspec.json.Decoder(StoredLine).decode
_encode = msgspec.json.Encoder().encode
_encode_sorted = msgspec.json.Encoder(order="sorted").encode


def endpoint_identity(base_url: str, workspace_id: str | None = None) -> str:
    """Who answers a connection's requests, as the cache keys name it: the base URL's scheme,
    host (lower case) and port (the scheme's default spelled out), its path, and the workspace
    when one is named (``https://api.anthropic.com:443/?workspace=wrkspc_1``). Credentials
    and queries in the URL are left out."""
    parts = urlsplit(base_url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or {"https": 443, "http": 80}.get(scheme, 0)
    path = parts.path.rstrip("/") + "/"
    identity = f"{scheme}://{host}:{port}{path}"
    return f"{identity}?workspace={workspace_id}" if workspace_id else identity


def request_cache_key(
    params: bytes, *, endpoint: str, anthropic_version: str, betas: Sequence[str]
) -> bytes:
    """The 16-byte key of a request's params (JSON, defaults applied) for this endpoint
    (:func:`endpoint_identity`), this API version and these betas."""
    try:
        canonical = _encode_sorted(msgspec.json.decode(params))
    except (msgspec.DecodeError, msgspec.EncodeError, OverflowError, RecursionError):
        canonical = params  # e.g. an integer beyond 64 bits: the bytes as they are
    digest = hashlib.blake2b(digest_size=16)
    digest.update(b"endpoint " + endpoint.encode() + b"\n")
    digest.update(anthropic_version.encode() + b"\n")
    digest.update(",".join(sorted(betas)).encode() + b"\n")
    digest.update(canonical)
    return digest.digest()


def _exact(key: bytes, custom_id: str) -> str:
    """The index entry of the very request (same params and custom_id) answered before: an
    unchanged eval gets back each request's own earlier result, even when two of its requests
    have the same params."""
    return f"{key.hex()}:{custom_id_hash(custom_id).hex()}"


class CacheInfo(BaseModel):
    """The cache's part in a job: kept in the job descriptor (``cache``)."""

    model_config = ConfigDict(extra="ignore")

    path: str
    conn_id: str | None = None
    endpoint: str | None = None
    """Who answered the hits and receives the misses (:func:`endpoint_identity`); None in the
    descriptors of releases before it was recorded."""
    hits: int
    misses: int
    segments_read: int = 0
    cached_file: str = CACHED_FILE
    keys_file: str = KEYS_FILE
    uncached_file: str = UNCACHED_FILE
    parts: list[int] = []
    """Byte offsets in ``uncached_file`` where a new part begins (a matrix job's model), so
    that what is sent keeps one batch per part."""


class CrossRunCache:
    """The cache folder; see the module docstring."""

    def __init__(
        self,
        root: StoragePath,
        *,
        endpoint: str,
        anthropic_version: str,
        betas: Sequence[str] = (),
        conn_id: str | None = None,
    ) -> None:
        self.root = root
        self.folder = child(root, VERSION)
        self.endpoint = endpoint
        self.anthropic_version = anthropic_version
        self.betas = tuple(betas)
        self.conn_id = conn_id

    def __repr__(self) -> str:
        return f"CrossRunCache({str(self.root)!r})"

    def key(self, line: bytes) -> tuple[str, bytes]:
        """``(custom_id, key)`` of a staged request line."""
        parsed = _decode_params(line)
        params = bytes(parsed.params)
        return parsed.custom_id, request_cache_key(
            params,
            anthropic_version=self.anthropic_version,
            betas=self.betas,
            endpoint=self.endpoint,
        )

    def segments(self) -> list[str]:
        """Names of the complete segments, newest first."""
        try:
            names = [p.name for p in fresh(self.folder).iterdir()]  # type: ignore[attr-defined]
        except (FileNotFoundError, NotADirectoryError):
            return []
        complete = {n[: -len(".keys")] for n in names if n.endswith(".keys")}
        return sorted((n for n in complete if f"{n}.jsonl" in names), reverse=True)

    # -- submission ------------------------------------------------------------------------

    def plan(
        self,
        job: JobStore,
        requests_file: str,
        log: Any,
        part_of: Callable[[str], str] | None = None,
    ) -> CacheInfo:
        """Split the job's staged requests into hits and misses (reused when already done).

        ``part_of`` names the part a custom_id belongs to; where it changes among the misses,
        a new part begins (``CacheInfo.parts``)."""
        existing = job.read_json(PLAN_FILE)
        if existing is not None:
            info = CacheInfo.model_validate(existing)
            log.info(
                "Cross-run cache: reusing this job's earlier lookup (%d hit(s), %d to send)",
                info.hits,
                info.misses,
            )
            return info
        names = self.segments()
        with DiskIndex() as known, DiskIndex() as hits, ExitStack() as stack:
            for number, name in enumerate(names):
                known.update(self._keys_of(name, number))
            uncached = stack.enter_context(atomic_writer(job.path(UNCACHED_FILE)))
            keys = stack.enter_context(atomic_writer(job.path(KEYS_FILE)))
            misses = written = 0
            parts: list[int] = []
            part: str | None = None
            with job.path(requests_file).open("rb") as stream:
                for line in stream:
                    if not line.strip():
                        continue
                    custom_id, key = self.key(line.rstrip(b"\r\n"))
                    location = known.get(_exact(key, custom_id)) or known.get(key.hex())
                    if location is None:
                        this = part_of(custom_id) if part_of is not None else ""
                        if not parts or this != part:
                            parts.append(written)
                            part = this
                        uncached.write(line)
                        written += len(line)
                        keys.write(_encode(KeyLine(custom_id, key.hex())) + b"\n")
                        misses += 1
                    else:
                        segment, offset, length = _LOCATION.unpack(location)
                        hits.put(
                            f"{segment:08d}:{offset:016d}:{custom_id}", length.to_bytes(4, "big")
                        )
            with atomic_writer(job.path(CACHED_FILE)) as cached:
                count = self._copy_hits(names, hits, cached)
        info = CacheInfo(
            path=str(self.root),
            conn_id=self.conn_id,
            endpoint=self.endpoint,
            hits=count,
            misses=misses,
            segments_read=len(names),
            parts=parts,
        )
        job.write_json(info.model_dump(mode="json"), PLAN_FILE)
        log.info(
            "Cross-run cache %s: %d request(s) answered from %d segment(s) (answers of %s), "
            "%d to send",
            self.root,
            count,
            len(names),
            self.endpoint,
            misses,
        )
        return info

    def _keys_of(self, name: str, number: int) -> Iterator[tuple[str, bytes]]:
        with child(self.folder, f"{name}.keys").open("rb") as stream:
            while chunk := stream.read(KEYS_RECORD.size * 4096):
                for key, id_digest, offset, length in KEYS_RECORD.iter_unpack(chunk):
                    location = _LOCATION.pack(number, offset, length)
                    yield key.hex(), location
                    yield f"{key.hex()}:{id_digest.hex()}", location

    def _copy_hits(self, names: list[str], hits: DiskIndex, out: IO[bytes]) -> int:
        """Write each hit's stored result under its new custom_id, reading every segment
        once, front to back (hits are ordered by segment and offset)."""
        count = 0
        current = -1
        stream: Any = None
        try:
            for where, packed in hits.items():
                segment_text, offset_text, custom_id = where.split(":", 2)
                segment, offset = int(segment_text), int(offset_text)
                if segment != current:
                    if stream is not None:
                        stream.close()
                    stream = child(self.folder, f"{names[segment]}.jsonl").open("rb")
                    current = segment
                stream.seek(offset)
                stored = _decode_stored(stream.read(int.from_bytes(packed, "big")))
                line = _CachedLine(
                    custom_id, stored.result, _Source(stored.batch_id, stored.custom_id)
                )
                out.write(_encode(line) + b"\n")
                count += 1
        finally:
            if stream is not None:
                stream.close()
        return count

    # -- the fetch -------------------------------------------------------------------------

    def writer(self, job: JobStore, info: CacheInfo) -> CacheWriter:
        return CacheWriter(self.folder, job.path(info.keys_file))


SEND_FOLDER = f"{CACHE_FOLDER}/send"


class CacheStep:
    """The cache's part in ``submit_job``: look the staged requests up, then stage only the
    misses for sending.

    :param validator: checks the misses again as they are staged for sending (they already
        carry their defaults): give it the observers that must see only what is sent, such
        as the cost estimate.
    """

    def __init__(
        self,
        cache: CrossRunCache,
        validator: RequestValidator,
        part_of: Callable[[str], str] | None = None,
    ) -> None:
        self.cache = cache
        self.validator = validator
        self.part_of = part_of

    def stage(self, staged: Staged, log: Any) -> Staged:
        info = self.cache.plan(staged.store, REQUESTS_FILE, log, self.part_of)
        if not info.misses:
            return Staged(staged.store, staged.prepared, None, None, REQUESTS_FILE, info)
        root = staged.store.sub(*SEND_FOLDER.split("/"))
        path = staged.store.path(info.uncached_file)
        starts = info.parts or [0]
        ends: list[int | None] = [*starts[1:], None]
        parts = Parts(_Range(path, a, b) for a, b in zip(starts, ends, strict=True))
        sent_store, sent = stage_requests(root, parts, self.validator)
        sent_file = f"{SEND_FOLDER}/{job_key(sent.fingerprint)}/{REQUESTS_FILE}"
        return Staged(staged.store, staged.prepared, sent, sent_store, sent_file, info)


class _Range:
    """The staged lines between two byte offsets of a file (``None``: to its end). Staged
    lines are this job's own, one request per ``\n``-terminated line."""

    def __init__(self, path: StoragePath, start: int, end: int | None) -> None:
        self.path, self.start, self.end = path, start, end

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        with self.path.open("rb") as stream:
            stream.seek(self.start)
            at = self.start
            for number, line in enumerate(stream, start=1):
                if self.end is not None and at >= self.end:
                    return
                at += len(line)
                yield f"line {number}", line.rstrip(b"\r\n")
