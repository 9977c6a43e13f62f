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

**Layout** (``<cache_path>/v2/``, ``_layout``; the ``v1/`` folder of releases whose keys did
not name the endpoint is never read, so upgrading from them costs one night of misses, never a
wrong hit; delete it when convenient): *segments*, one per fetch that stored new results,
each written once and never changed, so concurrent runs never lose each other's writes: a
``.jsonl`` of stored results (``{"key", "custom_id", "batch_id", "stored", "result"}``) and
its index, written once the data is complete (a segment without one is not read).

**Bounds** (``max_age``, ``max_bytes``; :class:`~._compact.Bounds`): an entry older than
``max_age``, or in a segment beyond ``max_bytes`` of newer ones, is a miss, and compaction
(``_compact``, after a fetch stored its segment) drops it; compaction also merges small
segments, and deletes what it replaced only after a grace period, lock-free.

**At submission** (:meth:`CrossRunCache.plan`), after pre-flight: the lookup (``_plan``)
reads the staged requests and the live segments' index records, a range of keys at a time,
so memory stays flat and time grows with the cache only by a scan of 40 bytes an entry;
each request is either a *hit* (the result stored for the same params, that very
custom_id's first when there is one) or a *miss*. The job's folder
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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import msgspec
from pydantic import BaseModel, ConfigDict

from airflow_batches.jobs._store import JobStore, StoragePath, child
from airflow_batches.jobs.cache._compact import Bounds
from airflow_batches.jobs.cache._layout import (
    CACHED_FILE,
    KEYS_FILE,
    PLAN_FILE,
    UNCACHED_FILE,
    VERSION,
)
from airflow_batches.jobs.cache._plan import Lookup, Observer, replan
from airflow_batches.jobs.cache._receipts import input_digest, recall, remember
from airflow_batches.jobs.cache._segments import live_segments
from airflow_batches.jobs.cache._writer import CacheWriter
from airflow_batches.jobs.prepare import (
    REQUESTS_FILE,
    Limits,
    Parts,
    Prepared,
    RequestValidator,
    Shard,
    Staged,
)

__all__ = [
    "CacheInfo",
    "CacheStep",
    "CrossRunCache",
    "endpoint_identity",
    "request_cache_key",
]


class _Params(msgspec.Struct):
    custom_id: str
    params: msgspec.Raw


_decode_params = msgspec.json.Decoder(_Params).decode
_decode_any = msgspec.json.Decoder().decode
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


def _identity(endpoint: str, anthropic_version: str, betas: Sequence[str]) -> bytes:
    return (
        b"endpoint "
        + endpoint.encode()
        + b"\n"
        + anthropic_version.encode()
        + b"\n"
        + ",".join(sorted(betas)).encode()
        + b"\n"
    )


def request_cache_key(
    params: bytes, *, endpoint: str, anthropic_version: str, betas: Sequence[str]
) -> bytes:
    """The 16-byte key of a request's params (JSON, defaults applied) for this endpoint
    (:func:`endpoint_identity`), this API version and these betas."""
    return _key(_identity(endpoint, anthropic_version, betas), params)


def _key(identity: bytes, params: bytes) -> bytes:
    try:
        canonical = _encode_sorted(_decode_any(params))
    except (msgspec.DecodeError, msgspec.EncodeError, OverflowError, RecursionError):
        canonical = params  # e.g. an integer beyond 64 bits: the bytes as they are
    return hashlib.blake2b(identity + canonical, digest_size=16).digest()


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
    max_age_s: float | None = None
    """The cache's bounds at submission (the fetch's compaction keeps to them)."""
    max_bytes: int | None = None

    def bounds(self) -> Bounds:
        age = timedelta(seconds=self.max_age_s) if self.max_age_s is not None else None
        return Bounds(max_age=age, max_bytes=self.max_bytes)


class CrossRunCache:
    """The cache folder; see the module docstring.

    :param max_age: entries older than this are misses (and compacted away); None: no bound.
    :param max_bytes: stored results kept, newest first; None: no bound.
    :param clock: now, as an aware datetime (tests inject one).
    """

    def __init__(
        self,
        root: StoragePath,
        *,
        endpoint: str,
        anthropic_version: str,
        betas: Sequence[str] = (),
        conn_id: str | None = None,
        max_age: timedelta | None = None,
        max_bytes: int | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.root = root
        self.folder = child(root, VERSION)
        self.endpoint = endpoint
        self.anthropic_version = anthropic_version
        self.betas = tuple(betas)
        self.conn_id = conn_id
        self.bounds = Bounds(max_age=max_age, max_bytes=max_bytes)
        self.clock = clock
        self._identity = _identity(endpoint, anthropic_version, self.betas)
        self._keyed = hashlib.blake2b(self._identity, digest_size=16)
        """The identity hashed already: a request's key is a copy of it, its params added."""

    def __repr__(self) -> str:
        return f"CrossRunCache({str(self.root)!r})"

    def key(self, line: bytes) -> tuple[str, bytes]:
        """``(custom_id, key)`` of a staged request line."""
        try:
            value = _decode_any(line)
            canonical = _encode_sorted(value["params"])
            custom_id = value["custom_id"]
        except (msgspec.DecodeError, msgspec.EncodeError, OverflowError, RecursionError):
            parsed = _decode_params(line)
            return parsed.custom_id, _key(self._identity, bytes(parsed.params))
        key = self._keyed.copy()
        key.update(canonical)
        return custom_id, key.digest()

    def segments(self) -> list[str]:
        """Names of the segments a lookup reads now, newest first."""
        age, size = self.bounds.max_age, self.bounds.max_bytes
        return [s.name for s in live_segments(self.folder, self.clock(), age, size)]

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
        return self.lookup(job, requests_file, log, part_of)[0]

    def lookup(
        self,
        job: JobStore,
        requests_file: str,
        log: Any,
        part_of: Callable[[str], str] | None = None,
        *,
        request_count: int = 0,
        limits: Limits | None = None,
        observers: Sequence[Observer] = (),
    ) -> tuple[CacheInfo, Prepared | None]:
        """:meth:`plan`, and the misses planned as batches (``limits``) and fingerprinted as
        pre-flight would have, shown to ``observers`` (None when there is none)."""
        limits = limits or Limits()
        existing = job.read_json(PLAN_FILE)
        if existing is not None:
            info = CacheInfo.model_validate(existing)
            log.info(
                "Cross-run cache: reusing this job's earlier lookup (%d hit(s), %d to send)",
                info.hits,
                info.misses,
            )
            sent = existing.get("sent")
            if not info.misses:
                return info, None
            if sent is not None and not observers:
                return info, _prepared(sent)
            return info, replan(job.path(info.uncached_file), info.parts, limits, observers)
        bounds = self.bounds
        now = self.clock()
        segments = live_segments(self.folder, now, bounds.max_age, bounds.max_bytes)
        lookup = Lookup(
            key=self.key,
            identity=self._identity,
            folder=self.folder,
            segments=segments,
            cutoff=int((now - bounds.max_age).timestamp()) if bounds.max_age else None,
            job=job,
            requests_file=requests_file,
            request_count=request_count,
            part_of=part_of,
            limits=limits,
            observers=observers,
        )
        sent = lookup.run()
        age = bounds.max_age.total_seconds() if bounds.max_age is not None else None
        info = CacheInfo(
            path=str(self.root),
            conn_id=self.conn_id,
            endpoint=self.endpoint,
            hits=lookup.hits,
            misses=lookup.misses,
            segments_read=len(segments),
            parts=lookup.parts,
            max_age_s=age,
            max_bytes=bounds.max_bytes,
        )
        plan = info.model_dump(mode="json")
        plan["sent"] = _prepared_json(sent) if sent is not None else None
        job.write_json(plan, PLAN_FILE)
        log.info(
            "Cross-run cache %s: %d request(s) answered from %d segment(s) (answers of %s), "
            "%d to send",
            self.root,
            lookup.hits,
            len(segments),
            self.endpoint,
            lookup.misses,
        )
        return info, sent

    # -- the fetch -------------------------------------------------------------------------

    def writer(self, job: JobStore, info: CacheInfo) -> CacheWriter:
        return CacheWriter(self.folder, job.path(info.keys_file), info.bounds(), self.clock)


def _prepared_json(prepared: Prepared) -> dict[str, Any]:
    return {
        "fingerprint": prepared.fingerprint,
        "request_count": prepared.request_count,
        "shards": [asdict(shard) for shard in prepared.shards],
    }


def _prepared(data: dict[str, Any]) -> Prepared:
    return Prepared(
        fingerprint=data["fingerprint"],
        request_count=data["request_count"],
        shards=[Shard(**shard) for shard in data["shards"]],
    )


class CacheStep:
    """The cache's part in ``submit_job``: look the staged requests up; the misses are what
    is sent, straight from ``uncached.jsonl`` (never validated again: they are the job's own
    staged lines).

    :param validator: its ``limits`` plan the misses as batches, and its observers (such as
        the cost estimate) see each miss: only what is sent.
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

    def recall(
        self,
        root: JobStore,
        records: Iterable[tuple[str, Any]] | Parts,
        validator: RequestValidator,
        on_invalid: str,
        sidecar: Any,
        log: Any,
    ) -> tuple[str | None, Staged | None]:
        """``(digest, job)``: the digest of this input and settings (None: no receipt can
        name them), and the job staged from an earlier pre-flight's receipt, if there is one
        (``_receipts``)."""
        digest = input_digest(records, validator, on_invalid)
        if digest is None:
            return None, None
        staged = recall(self.cache.folder, digest, root, sidecar)
        if staged is not None:
            log.info(
                "Pre-flight: this input was judged before with the same settings (receipt "
                "%s); the staged requests of that job were copied into %s",
                digest[:16],
                staged.store.root,
            )
        return digest, staged

    def remember(self, digest: str, staged: Staged, sidecar: Any) -> None:
        """Keep pre-flight's verdict on this input for the next job (``_receipts``)."""
        remember(self.cache.folder, digest, staged, sidecar)

    def stage(self, staged: Staged, log: Any) -> Staged:
        info, sent = self.cache.lookup(
            staged.store,
            REQUESTS_FILE,
            log,
            self.part_of,
            request_count=staged.prepared.request_count,
            limits=self.validator.limits,
            observers=self.validator.observers,
        )
        if sent is None:
            return Staged(staged.store, staged.prepared, None, None, REQUESTS_FILE, info)
        return Staged(staged.store, staged.prepared, sent, staged.store, info.uncached_file, info)
