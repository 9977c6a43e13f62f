"""What a published result line gains from the job: metadata, its model, the cache's part.

:class:`ResultJoin` sees every final line as it is published (after the line checks, before
the sink) and

* joins the request's ``metadata`` from the sidecar (``prepare._sidecar``) and, for a model-matrix
  job, ``"matrix": {"model": label, "custom_id": original custom_id}`` (``prepare._matrix``), by
  appending members to the line's JSON object: the API's bytes are kept as they are;
* counts the line for its model (counts, usage and cost, cache hit rate, time to end), for the
  manifest's ``matrix`` section;
* hands the succeeded lines of requests the cross-run cache could not answer to its writer
  (``jobs.cache``), and counts the lines it did answer apart: they were not billed by this job,
  their usage priced at batch prices is the spend avoided.

Memory: the sidecar is read into a ``DiskIndex`` (``jobs._index``); the totals hold one tally per
model and one set of batch ids per model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from airflow_batches.api import BatchesError, MessageBatch
from airflow_batches.api._pricing import PriceTable
from airflow_batches.jobs._descriptor import JobDescriptor
from airflow_batches.jobs._index import DiskIndex
from airflow_batches.jobs._store import JobStore, StoragePath
from airflow_batches.jobs.cache import CacheInfo, CacheWriter, CrossRunCache
from airflow_batches.jobs.prepare import (
    HASH_HEX,
    KEEP_CHARS,
    ModelMatrix,
    load_sidecar,
    original_key,
)
from airflow_batches.jobs.results._scan import ResultRecord
from airflow_batches.jobs.results._totals import ResultTally

__all__ = ["ResultJoin", "cached_lines_of", "job_join"]

_encode = msgspec.json.Encoder().encode


class _ResultOnly(msgspec.Struct):
    custom_id: str
    result: msgspec.Raw


_decode_result = msgspec.json.Decoder(_ResultOnly).decode


@dataclass
class _ModelTotals:
    """One matrix model's share of the job."""

    billed: ResultTally
    cached: ResultTally
    batches: set[str] = field(default_factory=set)


@dataclass
class ResultJoin:
    """See the module docstring. Build with :meth:`open`; ``close`` when done."""

    prices: PriceTable
    matrix: ModelMatrix | None = None
    sidecar: DiskIndex | None = None
    writer: CacheWriter | None = None
    cache_info: CacheInfo | None = None
    cached: ResultTally | None = None
    metadata_lines: int = 0
    stored: int = 0
    """Results stored in the cross-run cache (once ``finish`` was called)."""
    _batch: str | None = None
    _models: dict[str, _ModelTotals] = field(default_factory=dict)

    @classmethod
    def open(
        cls,
        prices: PriceTable,
        *,
        matrix: ModelMatrix | None,
        sidecar: StoragePath | None,
        writer: CacheWriter | None = None,
        cache_info: CacheInfo | None = None,
    ) -> ResultJoin:
        index = None
        if sidecar is not None:
            index = DiskIndex()
            try:
                load_sidecar(sidecar, index)
            except BaseException:
                index.close()
                raise
        join = cls(prices, matrix, index, writer, cache_info)
        if cache_info is not None:
            join.cached = ResultTally(prices)
        if matrix is not None:
            for model in matrix.models:
                join._models[model.label] = _ModelTotals(ResultTally(prices), ResultTally(prices))
        return join

    @property
    def active(self) -> bool:
        """Whether lines need anything of this join (else they pass untouched)."""
        return any(x is not None for x in (self.matrix, self.sidecar, self.writer, self.cache_info))

    def batch(self, batch_id: str) -> None:
        """The lines that follow come from this batch."""
        self._batch = batch_id

    def billed(self, record: ResultRecord | None, custom_id: str, line: bytes) -> bytes:
        """A line of one of the job's batches, as it is to be published."""
        totals = self._totals(custom_id)
        if totals is not None and record is not None:
            totals.billed.add(record)
            if self._batch:
                totals.batches.add(self._batch)
        if self.writer is not None and record is not None and record.result_type == "succeeded":
            try:
                result = bytes(_decode_result(line).result)
            except RecursionError:
                # Published all the same; not cached, since every later lookup would have to
                # parse it again (a later run asks the API for it instead).
                pass
            else:
                self.writer.add(custom_id, self._batch or "", result)
        return self._decorate(custom_id, line)

    def superseded(self, custom_id: str) -> None:
        """A line of the current batch that a later attempt answered: the batch is still one
        of its model's (its creation and end count in the model's time to end)."""
        totals = self._totals(custom_id)
        if totals is not None and self._batch:
            totals.batches.add(self._batch)

    def from_cache(self, record: ResultRecord, line: bytes) -> bytes:
        """A line the cross-run cache answered (not billed by this job)."""
        if self.cached is not None:
            self.cached.add(record)
        totals = self._totals(record.custom_id)
        if totals is not None:
            totals.cached.add(record)
        return self._decorate(record.custom_id, line)

    def _totals(self, custom_id: str) -> _ModelTotals | None:
        if self.matrix is None:
            return None
        split = self.matrix.split(custom_id)
        return self._models.get(split[0].label) if split is not None else None

    def label(self, custom_id: str) -> str | None:
        """The matrix model a custom_id belongs to (None for a job without a matrix)."""
        if self.matrix is None:
            return None
        split = self.matrix.split(custom_id)
        return split[0].label if split is not None else None

    def _decorate(self, custom_id: str, line: bytes) -> bytes:
        extra = b""
        matrix_part: tuple[str, str] | None = None
        if self.matrix is not None:
            split = self.matrix.split(custom_id)
            if split is not None:
                matrix_part = (split[0].label, self._original(split[1]))
        if self.sidecar is not None:
            metadata = self.sidecar.get(custom_id)
            if metadata:
                extra += b',"metadata":' + metadata
                self.metadata_lines += 1
        if matrix_part is not None:
            extra += b',"matrix":' + _encode({"model": matrix_part[0], "custom_id": matrix_part[1]})
        if not extra:
            return line
        body = line.rstrip()
        if not body.endswith(b"}"):
            return line  # not an object: kept as it is (the checks let it through as "other")
        return body[:-1] + extra + b"}"

    def _original(self, key: str) -> str:
        """The custom_id as the user wrote it, of a matrix request key."""
        shortened = len(key) == KEEP_CHARS + 1 + HASH_HEX and key[KEEP_CHARS] == "_"
        if shortened and self.sidecar is not None:
            found = self.sidecar.get(original_key(key))
            if found:
                return found.decode()
        return key

    # -- the manifest's figures ------------------------------------------------------------

    def models_summary(self, known: Mapping[str, MessageBatch]) -> dict[str, Any] | None:
        """The manifest's ``matrix`` section: one entry per model label, in matrix order.
        ``seconds_to_end``: from the creation of the model's first batch to the end of its
        last (on the API's clock), follow-ups included."""
        if self.matrix is None:
            return None
        out: dict[str, Any] = {}
        for model in self.matrix.models:
            totals = self._models[model.label]
            billed = totals.billed.to_dict()
            cached = totals.cached.to_dict()
            counts = {k: billed["counts"][k] + cached["counts"][k] for k in billed["counts"]}
            batches = [known[b] for b in totals.batches if b in known]
            ends = [e for b in batches if (e := b.ended_at)]
            last = max(ends) if ends else None
            first = min((b.created_at for b in batches), default=None)
            out[model.label] = {
                "model": model.model,
                "prefix": model.prefix,
                "params": dict(model.params),
                "requests": sum(counts.values()),
                "counts": counts,
                "errors_by_type": billed["error_counts"],
                "usage": billed["models"],
                "cost_usd": billed["cost_usd"],
                "standard_cost_usd": billed["standard_cost_usd"],
                "cost_complete": billed["cost_complete"],
                "cache_hit_rate": billed["cache_hit_rate"],
                "batch_ids": sorted(totals.batches),
                "last_ended_at": last.isoformat() if last else None,
                "seconds_to_end": round((last - first).total_seconds(), 3)
                if last and first
                else None,
                "cross_run_cache_hits": cached["counts"]["succeeded"],
                "cost_avoided_usd": cached["cost_usd"],
            }
        return out

    def cache_summary(self, stored: int) -> dict[str, Any] | None:
        """The manifest's ``cache`` section: the cross-run cache's hits, what it stored, and
        the spend avoided (the hits' usage at batch prices; at standard prices beside it)."""
        if self.cache_info is None or self.cached is None:
            return None
        cached = self.cached.to_dict()
        info = self.cache_info
        return {
            "path": info.path,
            "endpoint": info.endpoint,
            "hits": cached["counts"]["succeeded"],
            "misses": info.misses,
            "hit_rate": round(info.hits / (info.hits + info.misses), 6)
            if info.hits + info.misses
            else None,
            "stored": stored,
            "segments_read": info.segments_read,
            "cost_avoided_usd": cached["cost_usd"],
            "standard_cost_avoided_usd": cached["standard_cost_usd"],
            "cost_avoided_by_model": {m: e["cost_usd"] for m, e in cached["models"].items()},
        }

    def finish(self, *, ok: bool) -> int:
        """Commit (``ok``) or drop what the cache writer holds, and free the sidecar's index;
        returns the results stored in the cache. Safe to call twice."""
        stored = 0
        writer, self.writer = self.writer, None
        if writer is not None:
            stored = writer.commit() if ok else 0
            if not ok:
                writer.abort()
        self.stored = stored if writer is not None else self.stored
        if self.sidecar is not None:
            self.sidecar.close()
            self.sidecar = None
        return self.stored


def job_join(
    job: JobDescriptor, staged: JobStore | None, prices: PriceTable, cache: CrossRunCache | None
) -> ResultJoin:
    """The join of a job's published lines: its metadata sidecar, its matrix, and a writer of
    the cross-run ``cache`` (the job's cache opened on its storage) for what it sent."""
    info = CacheInfo.model_validate(job.cache) if job.cache else None
    sidecar = staged.path(job.sidecar_file) if staged is not None and job.sidecar_file else None
    writer = None
    if cache is not None and info is not None and staged is not None and info.misses:
        writer = cache.writer(staged, info)
    return ResultJoin.open(
        prices,
        matrix=ModelMatrix.from_json(job.matrix) if job.matrix else None,
        sidecar=sidecar,
        writer=writer,
        cache_info=info,
    )


def cached_lines_of(job: JobDescriptor, staged: JobStore | None) -> StoragePath | None:
    """Where the lines the cross-run cache answered for ``job`` are staged, if any."""
    if not job.cache:
        return None
    if staged is None:
        raise BatchesError(
            "the job's cross-run cache hits are staged with its requests, but the job has no "
            "staging folder"
        )
    return staged.path(CacheInfo.model_validate(job.cache).cached_file)
