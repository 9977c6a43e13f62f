"""What a published result line gains from the job: metadata, its model, the cache's part.

:class:`ResultJoin` sees every final line as it is published (after the line checks, before
the sink) and

* joins the request's ``metadata`` from the sidecar (``prepare._sidecar``) and, for a model-matrix
  job, ``"matrix": {"model": label, "custom_id": original custom_id}`` (``prepare._matrix``), by
  appending members to the line's JSON object: the API's bytes are kept as they are;
* counts the line for its model (counts, usage and cost, cache hit rate, time to end), for the
  manifest's ``matrix`` section; a line of no model goes to the job's own tally, and
  :meth:`ResultJoin.fold` adds the models' tallies to it at the end (each line is added once);
* hands the succeeded lines of requests the cross-run cache could not answer to its writer
  (``jobs.cache``), and counts the lines it did answer apart: they were not billed by this job,
  their usage priced at batch prices is the spend avoided.

Memory: the sidecar is read alongside the results (``jobs._lookahead``: the file is in the
job's order, results come batch by batch), with a ``DiskIndex`` behind it once more than a
batch's worth of entries wait; the original custom_ids of shortened matrix keys go to a
``DiskIndex`` when the first one is asked for. The totals hold one tally per model and one set
of batch ids per model.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from airflow_batches.api import BatchesError, MessageBatch
from airflow_batches.api._pricing import PriceTable
from airflow_batches.jobs._descriptor import JobDescriptor
from airflow_batches.jobs._index import DiskIndex
from airflow_batches.jobs._lookahead import Lookahead
from airflow_batches.jobs._store import JobStore, StoragePath
from airflow_batches.jobs.cache import CacheInfo, CacheWriter, CrossRunCache
from airflow_batches.jobs.prepare import (
    HASH_HEX,
    KEEP_CHARS,
    MatrixModel,
    ModelMatrix,
    original_key,
    sidecar_entries,
)
from airflow_batches.jobs.results._scan import ResultRecord
from airflow_batches.jobs.results._totals import ResultTally

__all__ = ["ResultJoin", "cached_lines_of", "job_join"]

_encode = msgspec.json.Encoder().encode
_ORIGINAL = original_key("")


class _ResultOnly(msgspec.Struct):
    custom_id: str
    result: msgspec.Raw


_decode_result = msgspec.json.Decoder(_ResultOnly).decode


@dataclass
class _ModelTotals:
    """One matrix model's share of the job."""

    model: MatrixModel
    billed: ResultTally
    cached: ResultTally
    batches: set[str] = field(default_factory=set)
    label_json: bytes = b""
    """``,"matrix":{"model":<label>`` as published."""


@dataclass
class ResultJoin:
    """See the module docstring. Build with :meth:`open`; ``finish`` when done."""

    prices: PriceTable
    matrix: ModelMatrix | None = None
    sidecar: StoragePath | None = None
    writer: CacheWriter | None = None
    cache_info: CacheInfo | None = None
    cached: ResultTally | None = None
    tally: ResultTally | None = None
    """The job's tally: billed lines of no model go here, and :meth:`fold` adds the models'."""
    metadata_lines: int = 0
    stored: int = 0
    """Results stored in the cross-run cache (once ``finish`` was called)."""
    _batch: str | None = None
    _models: dict[str, _ModelTotals] = field(default_factory=dict)
    _by_prefix: dict[str, _ModelTotals] = field(default_factory=dict)
    _metadata: Lookahead | None = None
    _originals: DiskIndex | None = None

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
        join = cls(prices, matrix, sidecar, writer, cache_info)
        if cache_info is not None:
            join.cached = ResultTally(prices)
        if sidecar is not None:
            join._metadata = Lookahead(lambda: _metadata_entries(sidecar))
        for model in matrix.models if matrix is not None else ():
            totals = _ModelTotals(model, ResultTally(prices), ResultTally(prices))
            totals.label_json = b',"matrix":{"model":' + _encode(model.label)
            join._models[model.label] = join._by_prefix[model.prefix] = totals
        return join

    @property
    def active(self) -> bool:
        """Whether lines need anything of this join (else they pass untouched)."""
        return any(x is not None for x in (self.matrix, self.sidecar, self.writer, self.cache_info))

    def batch(self, batch_id: str) -> None:
        """The lines that follow come from this batch."""
        self._batch = batch_id

    def _split(self, custom_id: str) -> tuple[_ModelTotals | None, str]:
        """The matrix model of a derived custom_id (``ModelMatrix.split``: its prefix is one
        of the matrix's), and the request key after the prefix."""
        prefix, sep, key = custom_id.partition("_")
        return (self._by_prefix.get(prefix) if sep else None), key

    def billed(
        self, record: ResultRecord | None, custom_id: str, line: bytes
    ) -> tuple[bytes, str | None]:
        """A line of one of the job's batches, as it is to be published, and its model's
        label (None for a job without a matrix). The record is counted once: in its model's
        tally, else in :attr:`tally`."""
        totals, key = self._split(custom_id)
        if record is not None:
            if totals is not None:
                totals.billed.add(record)
            elif self.tally is not None:
                self.tally.add(record)
        if self.writer is not None:
            self._store(record, custom_id, line)
        if totals is not None and self._batch:
            totals.batches.add(self._batch)
        return self._decorate(custom_id, line, totals, key), _label(totals)

    def _store(self, record: ResultRecord | None, custom_id: str, line: bytes) -> None:
        """Hand a succeeded line to the cache writer; any other line only lets go of its
        request's key (read ahead, it would wait for a result that is not coming)."""
        assert self.writer is not None
        if record is not None and record.result_type == "succeeded":
            try:
                result = bytes(_decode_result(line).result)
            except RecursionError:
                # Published all the same; not cached, since every later lookup would have to
                # parse it again (a later run asks the API for it instead).
                pass
            else:
                self.writer.add(custom_id, self._batch or "", result)
                return
        self.writer.skip(custom_id)

    def superseded(self, custom_id: str) -> None:
        """A line of the current batch that a later attempt answered: the batch is still one
        of its model's (its creation and end count in the model's time to end)."""
        totals = self._split(custom_id)[0]
        if totals is not None and self._batch:
            totals.batches.add(self._batch)

    def from_cache(self, record: ResultRecord, line: bytes) -> tuple[bytes, str | None]:
        """A line the cross-run cache answered (not billed by this job), as it is to be
        published, and its model's label; counted once, as :meth:`billed` does."""
        totals, key = self._split(record.custom_id)
        if totals is not None:
            totals.cached.add(record)
        elif self.cached is not None:
            self.cached.add(record)
        return self._decorate(record.custom_id, line, totals, key), _label(totals)

    def fold(self) -> None:
        """Add each model's tallies to the job's (:attr:`tally`, :attr:`cached`): once, after
        the last line."""
        for totals in self._models.values():
            if self.tally is not None:
                self.tally.merge(totals.billed)
            if self.cached is not None:
                self.cached.merge(totals.cached)

    def label(self, custom_id: str) -> str | None:
        """The matrix model a custom_id belongs to (None for a job without a matrix)."""
        return _label(self._split(custom_id)[0])

    def _decorate(
        self, custom_id: str, line: bytes, totals: _ModelTotals | None, key: str
    ) -> bytes:
        parts: list[Any] = []
        if self._metadata is not None:
            metadata = self._metadata.take(custom_id)
            if metadata:
                parts += (b',"metadata":', metadata)
                self.metadata_lines += 1
        if totals is not None:
            parts += (totals.label_json, b',"custom_id":', _encode(self._original(key)), b"}")
        if not parts:
            return line
        body = line.rstrip()
        if not body.endswith(b"}"):
            return line  # not an object: kept as it is (the checks let it through as "other")
        # One copy of the line: its bytes up to the closing brace, the members, the brace.
        return b"".join((memoryview(body)[:-1], *parts, b"}"))

    def _original(self, key: str) -> str:
        """The custom_id as the user wrote it, of a matrix request key."""
        shortened = len(key) == KEEP_CHARS + 1 + HASH_HEX and key[KEEP_CHARS] == "_"
        if shortened and self.sidecar is not None:
            if self._originals is None:
                self._originals = DiskIndex()
                self._originals.update(
                    e for e in sidecar_entries(self.sidecar) if e[0].startswith(_ORIGINAL)
                )
            found = self._originals.get(original_key(key))
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
                "cost_avoided_complete": cached["cost_complete"],
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
        """Commit (``ok``) or drop what the cache writer holds, and free the sidecar's
        lookups; returns the results stored in the cache. Safe to call twice."""
        stored = 0
        writer, self.writer = self.writer, None
        if writer is not None:
            stored = writer.commit() if ok else 0
            if not ok:
                writer.abort()
        self.stored = stored if writer is not None else self.stored
        for lookup in (self._metadata, self._originals):
            if lookup is not None:
                lookup.close()
        self._metadata = self._originals = None
        return self.stored


def _label(totals: _ModelTotals | None) -> str | None:
    return totals.model.label if totals is not None else None


def _metadata_entries(sidecar: StoragePath) -> Iterator[tuple[str, bytes]]:
    return (e for e in sidecar_entries(sidecar) if not e[0].startswith(_ORIGINAL))


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
