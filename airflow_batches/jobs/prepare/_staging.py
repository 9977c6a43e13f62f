"""Staging a job: its requests validated and written to its folder, and read back from it.

The folder of a job (``JobStore``) is on shared storage when the user gives a staging path:
the staged requests (``requests.jsonl``), the ledger when no task state store keeps it, the
requests rejected by pre-flight, and the staged requests of follow-up attempts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any, Protocol

import msgspec

from airflow_batches.jobs._descriptor import job_key
from airflow_batches.jobs._store import JobStore, atomic_writer, ensure_dir, fresh
from airflow_batches.jobs.prepare._fanout import matrix_input, prepare_matrix
from airflow_batches.jobs.prepare._shards import OnInvalid, Prepared, prepare
from airflow_batches.jobs.prepare._validate import RequestValidator

__all__ = [
    "REJECTED_FILE",
    "REQUESTS_FILE",
    "Parts",
    "SidecarWriter",
    "Staged",
    "combine",
    "select_range",
    "select_requests",
    "stage_requests",
]

REQUESTS_FILE = "requests.jsonl"
REJECTED_FILE = "rejected.jsonl"


class Parts(tuple[Iterable[tuple[str, Any]], ...]):
    """An input in several parts, each validated and sharded on its own (a batch never spans
    two), staged one after the other in one file: a model-matrix job, one part per model."""


class SidecarWriter(Protocol):
    """Something written while the input is read, kept beside the staged requests
    (``_metadata.Sidecar``): it opens its stream (``attach``'s opener) only once it has
    something to write, so a job without any costs no storage call."""

    name: str
    count: int

    def attach(self, opener: Callable[[], IO[bytes]]) -> None: ...

    def detach(self) -> bool:
        """Close the stream if one was opened; whether anything was written."""
        ...


def stage_requests(
    root: JobStore,
    records: Iterable[tuple[str, Any]] | Parts,
    validator: RequestValidator,
    *,
    on_invalid: OnInvalid = "fail",
    sidecar: SidecarWriter | None = None,
) -> tuple[JobStore, Prepared]:
    """Validate and stage the input under ``root/<fingerprint>/``; return that folder.

    The staged file is written under a temporary name and moved into place once valid; a
    retry with the same input finds it (same fingerprint) and reuses the folder. ``records``
    may be :class:`Parts`; a ``sidecar`` is written in the same pass and moved into the
    folder too (replacing an earlier one) when it holds anything.
    """
    ensure_dir(root.root)
    tag = uuid.uuid4().hex[:12]
    tmp = root.path(f".requests-{tag}.partial")
    side = root.path(f".sidecar-{tag}.partial")
    if sidecar is not None:
        sidecar.attach(lambda: side.open("wb"))
    try:
        with tmp.open("wb") as sink:
            prepared = _prepare_all(records, validator, sink, on_invalid)
    except BaseException:
        tmp.unlink(missing_ok=True)
        if sidecar is not None and sidecar.detach():
            side.unlink(missing_ok=True)
        raise
    wrote_sidecar = sidecar.detach() if sidecar is not None else False
    job = root.sub(job_key(prepared.fingerprint))
    ensure_dir(job.root)
    final = job.path(REQUESTS_FILE)
    if fresh(final).exists():
        tmp.unlink(missing_ok=True)
    else:
        tmp.rename(final)
    if sidecar is not None and wrote_sidecar:
        target = job.path(sidecar.name)
        target.unlink(missing_ok=True)
        side.rename(target)
    if prepared.rejected:
        with atomic_writer(job.path(REJECTED_FILE)) as out:
            for problem in prepared.rejected:
                out.write(_json_line(problem.to_dict()))
    return job, prepared


@dataclass
class Staged:
    """A job after pre-flight: its folder and what pre-flight made of it, and what of it is
    to be sent (all of it, unless the cross-run cache answered some: ``jobs.cache``)."""

    store: JobStore
    prepared: Prepared
    sent: Prepared | None = None
    """The requests to send; None when none is left to send."""
    sent_store: JobStore | None = None
    """The folder the requests to send are staged in (``store`` unless a cache split them)."""
    sent_file: str = REQUESTS_FILE
    """Where, within ``store``, the requests sent are staged."""
    cache: Any = None
    """The cache's lookup (``_cache.CacheInfo``), when a cache took part."""

    def __post_init__(self) -> None:
        if self.sent is None and self.cache is None:
            self.sent, self.sent_store = self.prepared, self.store


def _prepare_all(
    records: Iterable[tuple[str, Any]] | Parts,
    validator: RequestValidator,
    sink: IO[bytes],
    on_invalid: OnInvalid,
) -> Prepared:
    """``prepare`` over the input, or over each of its parts into the same file (a model
    matrix's parts in one pass: ``_fanout``): shard indexes, ordinals and offsets then run on
    across parts, and the fingerprint is that of the parts' fingerprints (hashed under the
    prefix ``segments:``, the parts' earlier name, so that a job keeps its fingerprint, and
    its folder and ledger, across releases)."""
    if not isinstance(records, Parts):
        return prepare(records, validator, sink, on_invalid=on_invalid)
    matrix = matrix_input(records)
    if matrix is not None:
        parts = prepare_matrix(matrix, validator, sink, on_invalid=on_invalid)
    else:
        parts = [prepare(part, validator, sink, on_invalid=on_invalid) for part in records]
    return combine(parts)


def combine(parts: list[Prepared]) -> Prepared:
    """One job of parts staged one after the other (see ``_prepare_all``)."""
    shards: list[Any] = []
    first = offset = 0
    for part in parts:
        for shard in part.shards:
            shards.append(
                dataclasses.replace(
                    shard,
                    index=len(shards),
                    first=shard.first + first,
                    offset=shard.offset + offset,
                )
            )
        first += part.request_count
        offset += sum(s.length for s in part.shards)
    if len(parts) == 1:  # one part: the same fingerprint as the input given as it is
        fingerprint = parts[0].fingerprint
    else:
        joined = ",".join(p.fingerprint for p in parts).encode()
        fingerprint = hashlib.sha256(b"segments:" + joined).hexdigest()
    return Prepared(
        fingerprint=fingerprint,
        request_count=first,
        shards=shards,
        rejected=[problem for p in parts for problem in p.rejected],
        rejected_count=sum(p.rejected_count for p in parts),
    )


def _json_line(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


class _CustomId(msgspec.Struct):
    custom_id: str


_decode_custom_id = msgspec.json.Decoder(_CustomId).decode


def select_requests(stream: IO[bytes], custom_ids: set[str]) -> Iterator[tuple[str, bytes]]:
    """The staged request lines whose custom_id is in ``custom_ids``."""
    for number, line in enumerate(stream, start=1):
        if line.strip() and _decode_custom_id(line).custom_id in custom_ids:
            yield f"line {number}", line


def select_range(stream: IO[bytes], first: int, count: int) -> Iterator[tuple[str, bytes]]:
    """``count`` staged request lines from ordinal ``first`` (0-based) on."""
    for number, line in enumerate(stream, start=1):
        if number > first + count:
            return
        if number > first:
            yield f"line {number}", line
