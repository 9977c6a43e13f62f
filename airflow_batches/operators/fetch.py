"""FetchResultsOperator: every result to object storage (or XCom), with a cost manifest."""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_batches._compat import AirflowException, Asset, BaseOperator, ObjectStoragePath, conf
from airflow_batches.api import APIConnectionError, BatchesError, Client, MessageBatch
from airflow_batches.api._pricing import PriceTable, load_price_table
from airflow_batches.hooks.batches import MessageBatchesHook
from airflow_batches.jobs._fetch import (
    MANIFEST_FILE,
    RETRYABLE_ERROR_TYPES,
    Attempt,
    FetchState,
    FileSinks,
    Known,
    LineSink,
    XComCollector,
    build_manifest,
    collect_resubmittable,
    file_names,
    retention_deadline,
    select_requests,
    stream_final_lines,
)
from airflow_batches.jobs._ledger import BatchInfo, JobDescriptor
from airflow_batches.jobs._prepare import Limits, RequestValidator
from airflow_batches.jobs._progress import JobProgress, WaitEvent
from airflow_batches.jobs._scan import ResultRecord
from airflow_batches.jobs._store import JobStore, atomic_writer
from airflow_batches.jobs._submit import (
    REQUESTS_FILE,
    JobSubmitter,
    LedgerBackend,
    MemoryLedger,
    job_key,
    new_ledger,
    stage_requests,
)
from airflow_batches.jobs._tally import ResultTally
from airflow_batches.jobs._wait import (
    DEFER_TIMEOUT_MARGIN,
    NOT_FOUND_GRACE,
    Poller,
    PollingFailed,
    WaitTimeout,
)
from airflow_batches.operators._common import (
    StateStoreLedger,
    coerce_batch_ids,
    coerce_job,
    job_folder,
    state_store,
    storage_path,
)
from airflow_batches.triggers.batch import BatchTrigger

if TYPE_CHECKING:
    from airflow_batches._compat import Context

PUBLISH_TRIES = 3


class FetchResultsOperator(BaseOperator):
    """Stream a job's results to object storage as JSONL, with a manifest and a cost figure.

    Results go to ``destination`` (a folder URI: ``results.jsonl``, or with
    ``split_by_type=True`` one file per result type, then ``manifest.json``), each file
    published atomically: written under a hidden name and moved into place, so no reader sees
    a partial file and a retry never duplicates lines. Without a destination the results are
    returned in XCom, up to ``max_xcom_bytes``.

    The manifest holds counts by result type and error type, usage and cost per model at
    batch prices (``prices`` extends the packaged table), cache hit rate, batch ids, timings
    and paths; its summary is returned to XCom and attached to the emitted Asset event.

    With ``resubmit_failed=True``, requests whose result is errored with a retryable error
    type, or expired, are resent as a follow-up batch of the same job, up to
    ``max_attempts`` attempts in all; the final results hold one line per custom_id, from its
    last attempt. ``invalid_request_error`` results are never resent.

    :param job: the output of ``SubmitBatchOperator`` (templated), or batch id(s).
    :param destination: folder URI for the results (templated); None returns them in XCom.
    :param destination_conn_id: connection of the destination's storage.
    :param conn_id: defaults to the job's connection.
    :param split_by_type: one file per result type instead of ``results.jsonl``.
    :param overwrite: replace results of another job found at the destination.
    :param max_xcom_bytes: size limit of results returned in XCom.
    :param prices: price overrides (``{"model": {"input": .., "output": ..}}``) or a path to a
        TOML/JSON price file; default ``[airflow_batches] prices_path`` if set.
    :param resubmit_failed: resend retryable failures as follow-up batches.
    :param max_attempts: attempts in all, the first submission included.
    :param retry_error_types: error types worth resending.
    :param retention_warning_days: warn when the results will be deleted within this many days.
    :param asset: the Asset to emit; by default one for a destination that is not templated;
        False for none.
    """

    template_fields: Sequence[str] = ("job", "destination")
    ui_color = "#dde8f5"

    def __init__(
        self,
        *,
        job: Any,
        destination: str | ObjectStoragePath | None = None,
        destination_conn_id: str | None = None,
        conn_id: str | None = None,
        split_by_type: bool = False,
        overwrite: bool = False,
        max_xcom_bytes: int = 1024 * 1024,
        prices: Mapping[str, Mapping[str, Any]] | str | None = None,
        resubmit_failed: bool = False,
        max_attempts: int = 3,
        retry_error_types: Sequence[str] = tuple(sorted(RETRYABLE_ERROR_TYPES)),
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float = 60.0,
        max_poke_interval: float = 600.0,
        timeout: timedelta = timedelta(hours=26),
        retention_warning_days: float = 3.0,
        asset: Asset | bool | None = None,
        **kwargs: Any,
    ) -> None:
        outlets = list(kwargs.pop("outlets", None) or [])
        self.asset = self._default_asset(destination, asset)
        if self.asset is not None and self.asset not in outlets:
            outlets.append(self.asset)
        super().__init__(outlets=outlets, **kwargs)
        if "invalid_request_error" in retry_error_types:
            raise ValueError("invalid_request_error results must be fixed, never resent")
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.job = job
        self.destination = destination
        self.destination_conn_id = destination_conn_id
        self.conn_id = conn_id
        self.split_by_type = split_by_type
        self.overwrite = overwrite
        self.max_xcom_bytes = max_xcom_bytes
        self.prices = prices
        self.resubmit_failed = resubmit_failed
        self.max_attempts = max_attempts
        self.retry_error_types = frozenset(retry_error_types)
        self.deferrable = deferrable
        self.poke_interval = poke_interval
        self.max_poke_interval = max_poke_interval
        self.wait_timeout = timeout
        self.retention_warning_days = retention_warning_days

    @staticmethod
    def _default_asset(destination: Any, asset: Asset | bool | None) -> Asset | None:
        if isinstance(asset, Asset):
            return asset
        if asset is False or destination is None:
            return None
        text = str(destination)
        if "{{" in text or "{%" in text:
            return None  # the URI is known only at run time: pass asset= explicitly
        if "://" not in text:
            text = "file://" + text
        return Asset(uri=text)

    # -- set-up ---------------------------------------------------------------------------

    @cached_property
    def price_table(self) -> PriceTable:
        source = self.prices
        if source is None:
            configured = conf.get("airflow_batches", "prices_path", fallback=None)
            source = configured or None
        return load_price_table(source)

    def _hook(self, job: JobDescriptor) -> MessageBatchesHook:
        return MessageBatchesHook(conn_id=self.conn_id or job.conn_id)

    def _resolve_job(self) -> JobDescriptor:
        descriptor = coerce_job(self.job)
        if descriptor is not None:
            return descriptor
        ids = coerce_batch_ids(self.job)
        conn_id = self.conn_id or MessageBatchesHook.default_conn_name
        hook = MessageBatchesHook(conn_id=conn_id)
        with hook.get_client() as client:
            batches = [client.retrieve(i) for i in ids]
        identity = hashlib.sha256(",".join(ids).encode()).hexdigest()
        return JobDescriptor(
            job_id=job_key(identity),
            fingerprint=identity,
            conn_id=conn_id,
            job_dir="",
            request_count=sum(b.request_counts.total for b in batches),
            anthropic_version=hook.anthropic_version,
            batches=[
                BatchInfo(
                    id=b.id,
                    request_count=b.request_counts.total,
                    created_at=b.created_at,
                    expires_at=b.expires_at,
                )
                for b in batches
            ],
            submitted_at=min(b.created_at for b in batches),
        )

    @staticmethod
    def _state_key(job_id: str) -> str:
        return f"airflow_batches.fetch.{job_id}"

    def _load_state(self, context: Context, job: JobDescriptor) -> FetchState:
        accessor = state_store(context, job_folder(job))
        if accessor is not None:
            data = accessor.get(self._state_key(job.job_id))
            if data:
                state = FetchState.model_validate(data)
                self.log.info(
                    "Resuming this job's fetch from an earlier try: %d attempt(s) so far",
                    len(state.attempts),
                )
                return state
        return FetchState(job_id=job.job_id, attempts=[Attempt(number=1, batches=job.batches)])

    def _save_state(self, context: Context, job: JobDescriptor, state: FetchState) -> None:
        accessor = state_store(context, job_folder(job))
        if accessor is not None:
            accessor.set(self._state_key(state.job_id), state.model_dump(mode="json"))

    # -- execution ------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        job = self._resolve_job()
        if self.resubmit_failed and not job.job_dir:
            self.log.warning(
                "resubmit_failed=True, but the job's requests were not staged on shared "
                "storage, so failures cannot be resent: give SubmitBatchOperator a "
                "staging_path (or set [airflow_batches] staging_path). Fetching as is."
            )
        state = self._load_state(context, job)
        return self._advance(context, job, state, started_at=datetime.now(UTC))

    def resume(
        self,
        context: Context,
        event: dict[str, Any],
        job: dict[str, Any] | None = None,
        state: dict[str, Any] | None = None,
        started_at: str | None = None,
    ) -> dict[str, Any]:
        """Back from waiting in the triggerer for a follow-up attempt.

        The job and its attempts come back in the deferral's kwargs; should a runner hand
        back only the event, they are rebuilt from the job and the task state store.
        """
        result = WaitEvent.model_validate(event)
        if result.status != "ended":
            raise AirflowException(f"waiting for the follow-up batches failed: {result.message}")
        descriptor = JobDescriptor.model_validate(job) if job else self._resolve_job()
        attempts = (
            FetchState.model_validate(state) if state else self._load_state(context, descriptor)
        )
        begun = datetime.fromisoformat(started_at) if started_at else datetime.now(UTC)
        return self._advance(context, descriptor, attempts, started_at=begun)

    def _advance(
        self, context: Context, job: JobDescriptor, state: FetchState, *, started_at: datetime
    ) -> dict[str, Any]:
        hook = self._hook(job)
        with hook.get_client() as client:
            while True:
                latest = state.latest
                current = {b.id: client.retrieve(b.id) for b in latest.batches}
                batches = list(current.values())
                if not JobProgress.of(batches).all_ended:
                    if latest.number == 1:
                        pending = [
                            f"{b.id} ({b.processing_status})" for b in batches if not b.is_ended
                        ]
                        raise AirflowException(
                            f"batch(es) not ended yet: {', '.join(pending)}; results exist only "
                            "once a batch has ended (put a BatchSensor before this task)"
                        )
                    ended = self._wait(context, client, job, state, latest, started_at)
                    current = {b.id: b for b in ended}
                if (
                    not self.resubmit_failed
                    or not job.job_dir
                    or latest.number >= self.max_attempts
                ):
                    break
                ids, reasons = collect_resubmittable(
                    client, latest, self.retry_error_types, current
                )
                if not ids:
                    break
                self.log.warning(
                    "Attempt %d: resending %d request(s) (%s) as attempt %d of %d",
                    latest.number,
                    len(ids),
                    ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())),
                    latest.number + 1,
                    self.max_attempts,
                )
                latest.resubmitted_next = reasons
                state.attempts.append(self._resubmit(context, client, job, ids, latest.number + 1))
                self._save_state(context, job, state)
            return self._publish(context, client, job, state, started_at)

    def _wait(
        self,
        context: Context,
        client: Client,
        job: JobDescriptor,
        state: FetchState,
        attempt: Attempt,
        started_at: datetime,
    ) -> list[MessageBatch]:
        ids = [b.id for b in attempt.batches]
        now = time.time()
        deadline = now + self.wait_timeout.total_seconds()
        if self.deferrable:
            self.defer(
                trigger=BatchTrigger(
                    batch_ids=ids,
                    conn_id=self.conn_id or job.conn_id,
                    poke_interval=self.poke_interval,
                    max_poke_interval=self.max_poke_interval,
                    deadline=deadline,
                    not_found_grace_until=now + NOT_FOUND_GRACE,
                    started_at=now,
                ),
                method_name="resume",
                timeout=timedelta(seconds=self.wait_timeout.total_seconds() + DEFER_TIMEOUT_MARGIN),
                kwargs={
                    "job": job.model_dump(mode="json"),
                    "state": state.model_dump(mode="json"),
                    "started_at": started_at.isoformat(),
                },
            )
        poller = Poller(
            client=client,
            log=self.log,
            poke_interval=self.poke_interval,
            max_poke_interval=self.max_poke_interval,
            not_found_grace_until=now + NOT_FOUND_GRACE,
        )
        try:
            return poller.wait(ids, started=now, deadline=deadline)
        except (PollingFailed, WaitTimeout) as exc:
            raise AirflowException(f"waiting for attempt {attempt.number}: {exc}") from exc

    def _resubmit(
        self, context: Context, client: Client, job: JobDescriptor, ids: set[str], number: int
    ) -> Attempt:
        requests = storage_path(job.job_dir, job.job_dir_conn_id)
        assert requests is not None
        source = requests / REQUESTS_FILE
        if not source.exists():
            raise AirflowException(
                f"the submitted requests are not at {source}: cannot resend failures "
                "(is staging_path shared storage that every worker can read?)"
            )
        limits = Limits(
            job.max_requests_per_batch or Limits.max_requests,
            job.max_bytes_per_batch or Limits.max_bytes,
        )
        validator = RequestValidator(anthropic_version=job.anthropic_version, limits=limits)
        with tempfile.TemporaryDirectory(prefix="airflow-batches-") as tmp:
            with source.open("rb") as stream:  # type: ignore[no-untyped-call]
                staged, prepared = stage_requests(
                    JobStore(Path(tmp)), select_requests(stream, ids), validator
                )
            accessor = state_store(context, job_folder(job))
            key = f"airflow_batches.followup.{job.job_id}.{number}.{job_key(prepared.fingerprint)}"
            backend: LedgerBackend = (
                StateStoreLedger(accessor, key) if accessor is not None else MemoryLedger()
            )
            ledger = backend.load() or new_ledger(
                prepared, anthropic_version=job.anthropic_version, attempt=number
            )
            JobSubmitter(
                client,
                backend,
                lambda: staged.path(REQUESTS_FILE).open("rb"),
                logger=self.log,
            ).submit(ledger)
        return Attempt(
            number=number,
            batches=[
                BatchInfo(
                    id=s.batch_id or "",
                    request_count=s.request_count,
                    created_at=s.created_at,
                    expires_at=s.expires_at,
                    attempt=number,
                )
                for s in ledger.shards
            ],
        )

    # -- publishing -----------------------------------------------------------------------

    def _check_retention(self, state: FetchState) -> None:
        deadline = retention_deadline(b for a in state.attempts for b in a.batches)
        if deadline is None:
            return
        left = deadline - datetime.now(UTC)
        if left < timedelta(days=self.retention_warning_days):
            self.log.warning(
                "The results of this job will be deleted by the API at %s (in %s): fetch them "
                "now; they are kept 29 days from creation",
                deadline.isoformat(),
                left,
            )

    @staticmethod
    def _retrieve_all(client: Client, state: FetchState) -> dict[str, MessageBatch]:
        return {info.id: client.retrieve(info.id) for a in state.attempts for info in a.batches}

    def _publish(
        self,
        context: Context,
        client: Client,
        job: JobDescriptor,
        state: FetchState,
        started_at: datetime,
    ) -> dict[str, Any]:
        self._check_retention(state)
        known = self._retrieve_all(client, state)
        for tries in range(1, PUBLISH_TRIES + 1):
            try:
                if self.destination is None:
                    return self._to_xcom(client, job, state, started_at, known)
                return self._to_storage(context, client, job, state, started_at, known)
            except APIConnectionError as exc:
                if tries == PUBLISH_TRIES:
                    raise
                self.log.warning(
                    "Download broke (%s); nothing was published; starting over (%d/%d)",
                    exc,
                    tries + 1,
                    PUBLISH_TRIES,
                )
        raise AssertionError("unreachable")

    def _stream(
        self, client: Client, state: FetchState, sink: LineSink, known: Known
    ) -> tuple[ResultTally, dict[str, int]]:
        """Feed ``sink`` the final lines, tallying them; a broken download stays retryable."""
        tally = ResultTally(self.price_table)

        def tee(record: ResultRecord, line: bytes) -> None:
            tally.add(record)
            sink(record, line)

        try:
            stats = stream_final_lines(client, state.attempts, tee, known)
        except APIConnectionError:
            raise
        except BatchesError as exc:
            raise AirflowException(str(exc)) from exc
        return tally, stats

    def _to_xcom(
        self,
        client: Client,
        job: JobDescriptor,
        state: FetchState,
        started_at: datetime,
        known: Known,
    ) -> dict[str, Any]:
        collector = XComCollector(self.max_xcom_bytes)
        tally, stats = self._stream(client, state, collector, known)
        manifest = build_manifest(
            job=job,
            state=state,
            tally=tally,
            stats=stats,
            files={},
            started_at=started_at,
            ended_at=_ended_at(known),
        )
        self._log_summary(manifest)
        return {"manifest": manifest, "results": collector.items}

    def _to_storage(
        self,
        context: Context,
        client: Client,
        job: JobDescriptor,
        state: FetchState,
        started_at: datetime,
        known: Known,
    ) -> dict[str, Any]:
        destination = storage_path(self.destination, self.destination_conn_id)
        assert destination is not None
        self._guard(destination, job)
        names = file_names(self.split_by_type)
        with ExitStack() as stack:
            streams = {
                key: stack.enter_context(atomic_writer(destination / name))
                for key, name in names.items()
            }
            files = FileSinks(streams, split_by_type=self.split_by_type)
            tally, stats = self._stream(client, state, files, known)
            if stats["lines"] != job.request_count:
                raise AirflowException(
                    f"fetched {stats['lines']} result line(s) for {job.request_count} "
                    "submitted request(s); nothing was published"
                )
        manifest = build_manifest(
            job=job,
            state=state,
            tally=tally,
            stats=stats,
            files={key: str(destination / name) for key, name in names.items()},
            started_at=started_at,
            ended_at=_ended_at(known),
        )
        manifest["destination"] = str(destination)
        JobStore(destination).write_json(manifest, MANIFEST_FILE)
        self._log_summary(manifest)
        self._emit_asset(context, manifest)
        return manifest

    def _guard(self, destination: ObjectStoragePath, job: JobDescriptor) -> None:
        """Never overwrite silently: only this job's own results may be replaced."""
        if self.overwrite:
            return
        existing = JobStore(destination).read_json(MANIFEST_FILE)
        if existing is not None:
            attempts = existing.get("attempts") or [{}]
            theirs = [b.get("id") for b in attempts[0].get("batches", [])]
            if theirs == job.batch_ids:
                self.log.info("Re-publishing this job's results at %s", destination)
                return
            raise AirflowException(
                f"{destination} holds the results of another job ({existing.get('job_id')}); "
                "pass overwrite=True to replace them, or choose another destination"
            )
        for name in file_names(self.split_by_type).values():
            if (destination / name).exists():
                raise AirflowException(
                    f"{destination / name} exists and is not from this job; pass "
                    "overwrite=True to replace it, or choose another destination"
                )

    def _log_summary(self, manifest: dict[str, Any]) -> None:
        self.log.info(
            "Fetched %d line(s) for %d request(s): %s; cost $%.6f%s; cache hit rate %s",
            manifest["lines"],
            manifest["request_count"],
            ", ".join(f"{k} {v}" for k, v in manifest["counts"].items()),
            manifest["cost_usd"],
            "" if manifest["cost_complete"] else f" (unpriced: {manifest['unpriced_models']})",
            manifest["cache_hit_rate"],
        )

    def _emit_asset(self, context: Context, manifest: dict[str, Any]) -> None:
        if self.asset is None:
            return
        summary = {
            key: manifest[key]
            for key in ("job_id", "lines", "counts", "cost_usd", "destination", "files")
        }
        context["outlet_events"][self.asset].extra = summary


def _ended_at(known: Known) -> dict[str, str | None]:
    return {i: b.ended_at.isoformat() if b.ended_at else None for i, b in known.items()}
