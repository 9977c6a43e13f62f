"""Publishing a job's final results: to object storage with a manifest, or to XCom.

Every file is written atomically (``_store.atomic_writer``): a failure anywhere (a foreign
batch, a missing line, a broken download) leaves nothing published under the destination's
names, and a retry never duplicates lines. A destination is never overwritten silently: only
the same run's results may be replaced (``_owner``), unless ``overwrite`` is set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import IO, Any

from airflow_batches.api import BatchesError, MessageBatch
from airflow_batches.api._pricing import PriceTable
from airflow_batches.jobs._descriptor import JobDescriptor
from airflow_batches.jobs._store import (
    JobStore,
    StoragePath,
    atomic_writer,
    child,
    file_name,
    name_clash,
)
from airflow_batches.jobs.results._attempts import Attempt, FetchOptions
from airflow_batches.jobs.results._checks import (
    IncompleteResultsError,
    PublishSink,
    Reader,
    ReadStats,
    custom_id_of,
    stream_final_lines,
)
from airflow_batches.jobs.results._join import ResultJoin
from airflow_batches.jobs.results._manifest import (
    MANIFEST_FILE,
    Manifest,
    build_manifest,
    file_names,
    retention_deadline,
)
from airflow_batches.jobs.results._owner import check_destination
from airflow_batches.jobs.results._scan import ResultRecord
from airflow_batches.jobs.results._sinks import FileSinks, XComCollector, read_cached_lines
from airflow_batches.jobs.results._totals import ResultTally


@dataclass
class Published:
    manifest: Manifest
    results: list[Any] | None = None
    """The results themselves when returned in XCom (no destination)."""


@dataclass
class Publisher:
    """Reads every final line once, through the line checks, into files or XCom."""

    job: JobDescriptor
    attempts: Sequence[Attempt]
    known: Mapping[str, MessageBatch]
    reader: Callable[[], Reader]
    prices: PriceTable
    options: FetchOptions
    log: Any
    join: Callable[[], ResultJoin] | None = None
    """Opens the join of metadata, matrix models and the cross-run cache (``_join``)."""
    cached_lines: StoragePath | None = None
    """The lines the cross-run cache answered for this job (``jobs.cache``)."""

    def publish(self, destination: StoragePath | None, started_at: datetime) -> Published:
        self._check_retention()
        if destination is None:
            return self._to_xcom(started_at)
        return self._to_storage(destination, started_at)

    def _read(self, sink: PublishSink) -> tuple[ResultTally, ReadStats, ResultJoin | None]:
        tally = ResultTally(self.prices)
        reader = self.reader()
        join = self.join() if self.join is not None else None
        if join is not None and not join.active:
            join = None
        try:
            if join is None:

                def plain(record: ResultRecord | None, line: bytes) -> None:
                    if record is not None:
                        tally.add(record)
                    sink(record, line, None)

                stats = stream_final_lines(reader, self.attempts, self.known, plain)
                return tally, stats, None

            join.tally = tally
            billed = join.billed

            def joined(record: ResultRecord | None, line: bytes) -> None:
                custom_id = record.custom_id if record is not None else custom_id_of(line)
                sink(record, *billed(record, custom_id, line))

            stats = stream_final_lines(
                reader,
                self.attempts,
                self.known,
                joined,
                on_batch=join.batch,
                on_superseded=join.superseded,
            )
            if self.cached_lines is not None:
                for record, line in read_cached_lines(self.cached_lines, stats):
                    sink(record, *join.from_cache(record, line))
            join.fold()
        except BaseException:
            if join is not None:
                join.finish(ok=False)
            raise
        return tally, stats, join

    def _manifest(
        self,
        tally: ResultTally,
        stats: ReadStats,
        join: ResultJoin | None,
        files: dict[str, str],
        started: datetime,
        **kw: Any,
    ) -> Manifest:
        stored = join.finish(ok=True) if join is not None else 0
        return build_manifest(
            job=self.job,
            attempts=self.attempts,
            tally=tally,
            stats=stats,
            known=self.known,
            files=files,
            started_at=started,
            join=join,
            cache_stored=stored,
            **kw,
        )

    def _to_xcom(self, started_at: datetime) -> Published:
        collector = XComCollector(self.options.max_xcom_bytes)
        tally, stats, join = self._read(collector)
        return Published(self._manifest(tally, stats, join, {}, started_at), collector.items)

    def _to_storage(self, destination: StoragePath, started_at: datetime) -> Published:
        self.guard(destination)
        names = self._names()
        with ExitStack() as stack:

            def open_file(key: str) -> IO[bytes]:
                names.setdefault(key, file_name(key))
                return stack.enter_context(atomic_writer(child(destination, names[key])))

            streams = {key: open_file(key) for key in list(names)}
            sinks = FileSinks(
                streams,
                split_by_type=self.options.split_by_type,
                split_by_model=self.options.split_by_model,
                open_more=open_file,
            )
            tally, stats, join = self._read(sinks)
            sinks.flush()
            if stats.lines != self.job.request_count:
                if join is not None:
                    join.finish(ok=False)
                raise IncompleteResultsError(
                    f"fetched {stats.lines} result line(s) for {self.job.request_count} "
                    "submitted request(s); nothing was published"
                )
        files = {key: str(child(destination, name)) for key, name in names.items()}
        manifest = self._manifest(
            tally,
            stats,
            join,
            files,
            started_at,
            destination=str(destination),
            run=self.options.run,
        )
        JobStore(destination).write_json(manifest.to_json(), MANIFEST_FILE)
        return Published(manifest)

    def _names(self) -> dict[str, str]:
        """The files a publish starts with: per result type or one, and per matrix model."""
        names = file_names(self.options.split_by_type)
        labels = [m["label"] for m in self.job.matrix or ()]
        if self.options.split_by_model and labels:
            clash = name_clash(labels)
            if clash is not None:
                # A job submitted before labels were checked: refuse rather than lose lines.
                raise BatchesError(
                    f"split_by_model: the labels {clash[0]!r} and {clash[1]!r} would be "
                    f"published to one file ({clash[2]!r} on storage that ignores case), and "
                    "one would overwrite the other; publish with split_by_model=False, or "
                    "submit again with labels that differ in more than case and punctuation"
                )
            names = {f"{k}.{label}": file_name(f"{k}.{label}") for k in names for label in labels}
        return names

    def guard(self, destination: StoragePath, **kwargs: Any) -> None:
        """Never overwrite silently: only this run's own results may be replaced (``_owner``;
        ``kwargs`` go to its ``check_destination``); outside Airflow (no run), this job's."""
        if self.options.overwrite:
            return
        check_destination(
            destination,
            self.options.run,
            names=self._names().values(),
            legacy=self._own_manifest,
            log=self.log,
            **kwargs,
        )

    def _own_manifest(self, existing: Any) -> bool:
        """A manifest that names no run is this job's own when it holds this job's batches."""
        theirs = _submitted_ids(existing)
        own = (theirs and set(self.job.batch_ids) <= theirs) or _same_unbatched_job(
            existing, self.job
        )
        if own:
            self.log.info("Re-publishing this job's results")
        return bool(own)

    def _check_retention(self) -> None:
        deadline = retention_deadline(b for a in self.attempts for b in a.batches)
        if deadline is None:
            return
        left = deadline - datetime.now(UTC)
        if left < timedelta(days=self.options.retention_warning_days):
            self.log.warning(
                "The results of this job will be deleted by the API at %s (in %s): fetch them "
                "now; they are kept 29 days from creation",
                deadline.isoformat(),
                left,
            )


def _submitted_ids(manifest: Any) -> set[str]:
    """The batch ids a manifest's job was submitted with (its first attempt, replaced ones
    included)."""
    try:
        first = manifest["attempts"][0]
        ids = {b["id"] for b in first.get("batches", [])}
        ids.update(first.get("replaced", []))
        return ids
    except (KeyError, IndexError, TypeError, AttributeError):
        return set()


def _same_unbatched_job(manifest: Any, job: JobDescriptor) -> bool:
    """A manifest of this very job when it sent nothing (every request came from the
    cross-run cache): the same requests, submitted at the same moment."""
    if job.batches or not isinstance(manifest, dict):
        return False
    timings = manifest.get("timings") or {}
    return bool(
        manifest.get("fingerprint") == job.fingerprint
        and timings.get("submitted_at") == job.submitted_at.isoformat()
        and not manifest.get("batch_ids")
    )
