"""FetchResultsOperator: every result to object storage (or XCom), with a cost manifest."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_batches._compat import AirflowException, Asset, BaseOperator, ObjectStoragePath
from airflow_batches.api._pricing import PriceTable
from airflow_batches.api._retry import NOT_FOUND_GRACE
from airflow_batches.hooks.batches import MessageBatchesHook
from airflow_batches.jobs import JobDescriptor, JobStore, descriptor_for_batches
from airflow_batches.jobs.cache import CacheInfo, CrossRunCache
from airflow_batches.jobs.results import (
    RETRYABLE_ERROR_TYPES,
    DownloadPolicy,
    FetchOptions,
    FetchState,
    FetchWorkflow,
    Published,
    claim_destination,
    release_destination,
)
from airflow_batches.jobs.submit import LedgerBackend, MemoryLedger, Registry
from airflow_batches.jobs.wait import WaitEvent
from airflow_batches.operators._common import (
    StateStoreLedger,
    coerce_batch_ids,
    coerce_job,
    default_asset,
    job_folder,
    price_table,
    state_store,
    storage_path,
    task_folder,
)
from airflow_batches.operators._failures import task_errors, wait_error
from airflow_batches.operators._lineage import FetchLineage
from airflow_batches.operators._links import FetchBatchesLink
from airflow_batches.operators._runs import run_ref, run_state
from airflow_batches.operators._wait_mixin import WaitMixin

if TYPE_CHECKING:
    from airflow_batches._compat import Context


class FetchResultsOperator(FetchLineage, WaitMixin, BaseOperator):
    """Stream a job's results to object storage as JSONL, with a manifest and a cost figure.

    Results go to ``destination`` (a folder URI: ``results.jsonl``, or with
    ``split_by_type=True`` one file per result type, then ``manifest.json``), each file
    published atomically: no reader sees a partial file and a retry never duplicates lines.
    Without a destination the results are returned in XCom, up to ``max_xcom_bytes``.

    Every line is checked: a batch must return exactly its requests (the custom_ids the job
    submitted in it), each once; a download cut mid-body resumes. The manifest holds counts by
    result type and error type, usage and cost per model at batch prices (``prices`` extends
    the packaged table), cache hit rate, batch ids, timings and paths; its summary is returned
    to XCom and attached to the emitted Asset event.

    With ``resubmit_failed=True``, requests whose result is errored with a retryable error
    type, or expired, are resent as a follow-up batch of the same job, up to
    ``max_attempts`` attempts in all; the final results hold one line per custom_id, from its
    last attempt. ``invalid_request_error`` results are never resent.

    :param job: the output of ``SubmitBatchOperator`` (templated), or batch id(s).
    :param destination: folder URI for the results (templated); None returns them in XCom.
    :param destination_conn_id: connection of the destination's storage.
    :param conn_id: defaults to the job's connection.
    :param split_by_type: one file per result type instead of ``results.jsonl``.
    :param split_by_model: for a model-matrix job, one file per model:
        ``results.<label>.jsonl`` (with ``split_by_type``, ``<type>.<label>.jsonl``).
    :param overwrite: replace results of another job found at the destination.
    :param max_xcom_bytes: size limit of results returned in XCom.
    :param prices: price overrides (``{"model": {"input": .., "output": ..}}``) or a path to a
        TOML/JSON price file; default ``[airflow_batches] prices_path`` if set.
    :param resubmit_failed: resend retryable failures as follow-up batches.
    :param max_attempts: attempts in all, the first submission included.
    :param retry_error_types: error types worth resending.
    :param retention_warning_days: warn when the results will be deleted within this many days.
    :param download_tries: reads of one batch's results before the task fails; each read
        after the first skips the lines already read (checked to be the same). Cuts within
        a read are resumed by the client and do not count.
    :param max_line_bytes: the longest results line read, in bytes (default: the
        connection's ``max_line_bytes`` extra, else 64 MiB); a longer line fails the task
        naming the batch and the line, and nothing is published.
    :param asset: the Asset to emit; by default one for a destination that is not templated;
        False for none.

    The follow-up batches are waited for by the wait contract shared with ``BatchSensor``
    (``deferrable``, ``poke_interval``, ``max_poke_interval``, ``backoff_factor``, ``timeout``
    for each wait, ``cancel_on_timeout``, ``cancel_on_kill``, ``max_transient_errors``:
    ``operators/_wait_mixin.WaitMixin``; docs/operators.md, *Waiting*).
    """

    template_fields: Sequence[str] = ("job", "destination")
    operator_extra_links = (FetchBatchesLink(),)
    ui_color = "#dde8f5"

    def __init__(
        self,
        *,
        job: Any,
        destination: str | ObjectStoragePath | None = None,
        destination_conn_id: str | None = None,
        conn_id: str | None = None,
        split_by_type: bool = False,
        split_by_model: bool = False,
        overwrite: bool = False,
        max_xcom_bytes: int = 1024 * 1024,
        prices: Mapping[str, Mapping[str, Any]] | str | None = None,
        resubmit_failed: bool = False,
        max_attempts: int = 3,
        retry_error_types: Sequence[str] = tuple(sorted(RETRYABLE_ERROR_TYPES)),
        retention_warning_days: float = 3.0,
        download_tries: int = 4,
        max_line_bytes: int | None = None,
        asset: Asset | bool | None = None,
        **kwargs: Any,
    ) -> None:
        outlets = list(kwargs.pop("outlets", None) or [])
        self.asset = default_asset(destination, asset)
        if self.asset is not None and self.asset not in outlets:
            outlets.append(self.asset)
        super().__init__(outlets=outlets, **kwargs)
        if "invalid_request_error" in retry_error_types:
            raise ValueError("invalid_request_error results must be fixed, never resent")
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if download_tries < 1:
            raise ValueError("download_tries must be >= 1")
        if max_line_bytes is not None and max_line_bytes < 1:
            raise ValueError("max_line_bytes must be >= 1")
        self.download_tries = download_tries
        self.max_line_bytes = max_line_bytes
        self.job = job
        self.destination = destination
        self.destination_conn_id = destination_conn_id
        self.conn_id = conn_id
        self.prices = prices
        self.options = FetchOptions(
            resubmit_failed=resubmit_failed,
            max_attempts=max_attempts,
            retry_error_types=frozenset(retry_error_types),
            split_by_type=split_by_type,
            split_by_model=split_by_model,
            overwrite=overwrite,
            max_xcom_bytes=max_xcom_bytes,
            retention_warning_days=retention_warning_days,
        )

    @cached_property
    def price_table(self) -> PriceTable:
        return price_table(self.prices)

    def _resolve_job(self) -> JobDescriptor:
        descriptor = coerce_job(self.job)
        if descriptor is not None:
            return descriptor
        ids = coerce_batch_ids(self.job)
        hook = MessageBatchesHook(conn_id=self.conn_id or MessageBatchesHook.default_conn_name)
        with hook.get_client() as client:
            batches = [client.retrieve(i) for i in ids]
        return descriptor_for_batches(
            batches, conn_id=hook.conn_id, anthropic_version=hook.anthropic_version
        )

    # -- the state of the attempts, across deferrals and task tries -------------------------

    def _load_state(self, context: Context, job: JobDescriptor) -> FetchState:
        accessor = state_store(context, job_folder(job))
        data = accessor.get(f"airflow_batches.fetch.{job.job_id}") if accessor else None
        if data:
            state = FetchState.model_validate(data)
            self.log.info(
                "Resuming this job's fetch from an earlier try: %d attempt(s) so far",
                len(state.attempts),
            )
            return state
        return FetchState.start(job)

    def _workflow(
        self, context: Context, job: JobDescriptor, state: FetchState, client: Any
    ) -> FetchWorkflow:
        accessor = state_store(context, job_folder(job))

        def save(state: FetchState) -> None:
            if accessor is not None:
                accessor.set(f"airflow_batches.fetch.{state.job_id}", state.model_dump(mode="json"))

        def ledger_for(key: str) -> LedgerBackend:
            if accessor is None:
                return MemoryLedger()
            return StateStoreLedger(accessor, f"airflow_batches.{key}.job-{job.job_id}")

        staged = storage_path(job.job_dir, job.job_dir_conn_id)
        registry = storage_path(job.registry_dir, job.job_dir_conn_id)
        return FetchWorkflow(
            job=job,
            state=state,
            client=client,
            prices=self.price_table,
            log=self.log,
            options=dataclasses.replace(self.options, run=run_ref(context)),
            staged=JobStore(staged) if staged is not None else None,
            ledger_for=ledger_for,
            save_state=save,
            download=DownloadPolicy(max_tries=self.download_tries),
            submitter={
                "registry": Registry(registry) if registry is not None else None,
                "job_id": f"{task_folder(context)}/{job.job_id}",
            },
            cache=self._cache(job),
        )

    @staticmethod
    def _cache(job: JobDescriptor) -> CrossRunCache | None:
        """The job's cross-run cache, opened on its storage (it stores what the job sent)."""
        if not job.cache:
            return None
        info = CacheInfo.model_validate(job.cache)
        path = storage_path(info.path, info.conn_id)
        assert path is not None
        # The keys of what it stores were made at submission (with the submit's endpoint).
        return CrossRunCache(
            path,
            endpoint=info.endpoint or "",
            anthropic_version=job.anthropic_version,
            conn_id=info.conn_id,
        )

    # -- execution ------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        with task_errors(self.conn_id or MessageBatchesHook.default_conn_name):
            job = self._resolve_job()
        if self.options.resubmit_failed and not job.job_dir:
            self.log.warning(
                "resubmit_failed=True, but the job's requests were not staged on shared "
                "storage, so failures cannot be resent: give SubmitBatchOperator a "
                "staging_path (or set [airflow_batches] staging_path). Fetching as is."
            )
        return self._run(context, job, self._load_state(context, job), datetime.now(UTC))

    def resume(
        self,
        context: Context,
        event: dict[str, Any],
        job: dict[str, Any] | None = None,
        state: dict[str, Any] | None = None,
        started_at: str | None = None,
    ) -> dict[str, Any]:
        """Back from waiting in the triggerer for batches the fetch created.

        The job and its attempts come back in the deferral's kwargs; should a runner hand
        back only the event, they are rebuilt from the job and the task state store.
        """
        descriptor = JobDescriptor.model_validate(job) if job else None
        conn_id = self.conn_id or (descriptor.conn_id if descriptor else None)
        conn_id = conn_id or MessageBatchesHook.default_conn_name
        self._check_wait(WaitEvent.model_validate(event), conn_id)
        if descriptor is None:
            with task_errors(conn_id):
                descriptor = self._resolve_job()
        attempts = (
            FetchState.model_validate(state) if state else self._load_state(context, descriptor)
        )
        begun = datetime.fromisoformat(started_at) if started_at else datetime.now(UTC)
        return self._run(context, descriptor, attempts, begun)

    def _run(
        self, context: Context, job: JobDescriptor, state: FetchState, started_at: datetime
    ) -> dict[str, Any]:
        hook = MessageBatchesHook(conn_id=self.conn_id or job.conn_id)
        destination = storage_path(self.destination, self.destination_conn_id)
        limits = {"max_line_bytes": self.max_line_bytes} if self.max_line_bytes else {}
        with (
            task_errors(hook.conn_id, not_found=lambda: _settled(state)),
            hook.get_client(**limits) as client,
        ):
            flow = self._workflow(context, job, state, client)
            if destination is not None:
                # Before anything is resent: refused if another run holds it, else ours.
                if not self.options.overwrite:
                    flow.check_destination(
                        destination,
                        is_running=run_state(context),
                        outcome="nothing was resent or published",
                    )
                claim_destination(destination, run_ref(context), job.job_id)
            while True:
                step = flow.next_wait() or flow.publish(destination, started_at)
                if isinstance(step, Published):
                    if destination is not None:
                        release_destination(destination)  # the manifest names the run now
                    return self._published(context, step)
                self._check_wait(
                    self.wait_or_defer(
                        conn_id=hook.conn_id,
                        batch_ids=step.batch_ids,
                        created_at=self._clock(),  # a moment ago, by this fetch
                        method_name="resume",
                        kwargs={
                            "job": job.model_dump(mode="json"),
                            "state": state.model_dump(mode="json"),
                            "started_at": started_at.isoformat(),
                        },
                    ),
                    hook.conn_id,
                )

    @staticmethod
    def _check_wait(event: WaitEvent, conn_id: str) -> None:
        if event.status == "error":
            raise wait_error(event, conn_id, "waiting for the batches the fetch created: ")
        if event.status != "ended":
            raise AirflowException(f"waiting for the batches the fetch created: {event.message}")

    def _published(self, context: Context, published: Published) -> dict[str, Any]:
        manifest = published.manifest
        self.log.info(
            "Fetched %d line(s) for %d request(s): %s; cost $%.6f%s; cache hit rate %s",
            manifest.lines,
            manifest.request_count,
            ", ".join(f"{k} {v}" for k, v in manifest.counts.items()),
            manifest.cost_usd,
            ""
            if manifest.cost_complete
            else f" (incomplete; unpriced: {manifest.unpriced_models})",
            manifest.cache_hit_rate,
        )
        for warning in manifest.cost_warnings:
            self.log.warning("%s", warning)
        data = self.keep_for_lineage("manifest", manifest.to_json())
        if published.results is not None:
            return {"manifest": data, "results": published.results}
        if self.asset is not None:
            keys = ("job_id", "lines", "counts", "cost_usd", "destination", "files")
            context["outlet_events"][self.asset].extra = {k: data[k] for k in keys}
        return data


def _settled(state: FetchState) -> bool:
    """Whether a 404 is final: every batch of the fetch is older than the 404 grace (a
    batch the fetch created a moment ago may answer 404 for a while)."""
    created = [b.created_at for a in state.attempts for b in a.batches]
    if any(c is None for c in created):
        return False
    newest = max((c for c in created if c is not None), default=None)
    return newest is None or (datetime.now(UTC) - newest).total_seconds() > NOT_FOUND_GRACE
