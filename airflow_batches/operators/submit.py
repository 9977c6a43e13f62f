"""SubmitBatchOperator: any number of requests in, a small job descriptor out."""

from __future__ import annotations

import gzip
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from airflow_batches._compat import BaseOperator, ObjectStoragePath
from airflow_batches.hooks.batches import MessageBatchesHook
from airflow_batches.jobs._ledger import JobDescriptor, Ledger
from airflow_batches.jobs._prepare import (
    Limits,
    OnInvalid,
    RequestValidator,
    records_from_items,
    records_from_jsonl,
)
from airflow_batches.jobs._store import JobStore
from airflow_batches.jobs._submit import (
    REJECTED_FILE,
    REQUESTS_FILE,
    JobSubmitter,
    LedgerBackend,
    descriptor_from_ledger,
    job_key,
    new_ledger,
    stage_requests,
    utcnow,
)
from airflow_batches.operators._common import (
    ledger_backend,
    parse_text,
    staging_root,
    storage_conn_id,
    storage_path,
    task_folder,
)

if TYPE_CHECKING:
    from airflow_batches._compat import Context


class SubmitBatchOperator(BaseOperator):
    """Validate requests and submit them as one logical job of one or more batches.

    Give the requests either inline / from XCom (``requests``) or as a JSONL file at any
    object-storage path (``requests_path``; ``.gz`` is read compressed), each item
    ``{"custom_id": ..., "params": {...}}``. Every request is validated before anything is
    sent; input over 100,000 requests or 256 MB is split into several batches. A retry of the
    task re-attaches to the batches already created (see docs/idempotency.md). Returns a job
    descriptor (batch ids, counts, fingerprint; never the requests) for ``BatchSensor`` and
    ``FetchResultsOperator``.

    :param requests: list of requests (templated; an XComArg works).
    :param requests_path: URI of a JSONL file of requests (templated).
    :param requests_conn_id: connection for ``requests_path``'s storage (e.g. an aws conn).
    :param defaults: Messages parameters that fill what a request leaves out (model,
        max_tokens, system, ...). The connection's ``default_model`` comes last.
    :param conn_id: the Message Batches connection.
    :param on_invalid: ``"fail"`` (default): nothing is sent if any request is invalid, and the
        error lists the problems; ``"skip"``: invalid requests are left out and reported.
    :param staging_path: shared folder (URI) for the staged requests, needed by
        ``FetchResultsOperator(resubmit_failed=True)``; default ``[airflow_batches]
        staging_path``. Without one, requests are staged in a local temporary file for the
        duration of this task only.
    :param staging_conn_id: connection for ``staging_path``'s storage.
    :param max_requests_per_batch: shard size limit (API maximum 100,000).
    :param max_bytes_per_batch: shard body limit in bytes (API maximum 256 MB).
    :param user_profile_id: sent as ``anthropic-user-profile-id`` on create.
    :param clock_skew_seconds: tolerance between our clock and the API's when a retry looks
        for a batch created by a create call whose answer was lost.
    :param create_attempts: create calls per batch before the task fails on a retryable
        answer (5xx, 529, connection errors). A task retry re-attaches to the batches already
        created and goes on with the rest.
    :param max_rate_limit_wait: seconds a batch may wait out 429s (rate limit, or the
        workspace's queue is full) before the task fails; a 429 costs no create attempt.
    """

    template_fields: Sequence[str] = (
        "requests",
        "requests_path",
        "defaults",
        "staging_path",
        "user_profile_id",
    )
    template_fields_renderers = {"requests": "json", "defaults": "json"}
    ui_color = "#f0e4d7"

    def __init__(
        self,
        *,
        requests: Sequence[Mapping[str, Any]] | None = None,
        requests_path: str | ObjectStoragePath | None = None,
        requests_conn_id: str | None = None,
        defaults: Mapping[str, Any] | None = None,
        conn_id: str = MessageBatchesHook.default_conn_name,
        on_invalid: OnInvalid = "fail",
        staging_path: str | ObjectStoragePath | None = None,
        staging_conn_id: str | None = None,
        max_requests_per_batch: int = Limits.max_requests,
        max_bytes_per_batch: int = Limits.max_bytes,
        user_profile_id: str | None = None,
        clock_skew_seconds: float = 120.0,
        create_attempts: int = 4,
        max_rate_limit_wait: float = 1800.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (requests is None) == (requests_path is None):
            raise ValueError("give exactly one of requests= or requests_path=")
        if on_invalid not in ("fail", "skip"):
            raise ValueError(f"on_invalid must be 'fail' or 'skip', got {on_invalid!r}")
        self.requests = requests
        self.requests_path = requests_path
        self.requests_conn_id = requests_conn_id
        self.defaults = dict(defaults or {})
        self.conn_id = conn_id
        self.on_invalid: OnInvalid = on_invalid
        self.staging_path = staging_path
        self.staging_conn_id = staging_conn_id
        self.limits = Limits(max_requests_per_batch, max_bytes_per_batch)
        self.user_profile_id = user_profile_id
        self.clock_skew_seconds = clock_skew_seconds
        self.create_attempts = create_attempts
        self.max_rate_limit_wait = max_rate_limit_wait

    @cached_property
    def hook(self) -> MessageBatchesHook:
        return MessageBatchesHook(conn_id=self.conn_id)

    def _records(self) -> Iterator[tuple[str, Any]]:
        if self.requests_path is not None:
            path = storage_path(self.requests_path, self.requests_conn_id)
            assert path is not None
            with path.open("rb") as raw:  # type: ignore[no-untyped-call]
                stream: IO[bytes] = raw
                if path.name.endswith(".gz"):
                    stream = gzip.GzipFile(fileobj=raw)  # type: ignore[assignment]
                yield from records_from_jsonl(stream)
            return
        items: Any = self.requests
        if isinstance(items, str) and items.lstrip().startswith("["):
            items = parse_text(items)  # a list that a template rendered as text
        if isinstance(items, str | bytes) or not isinstance(items, Sequence):
            raise TypeError(
                f"requests must be a list of {{custom_id, params}} objects, got "
                f"{type(items).__name__}; for a file use requests_path="
            )
        yield from records_from_items(items)

    def execute(self, context: Context) -> dict[str, Any]:
        validator = RequestValidator(
            anthropic_version=self.hook.anthropic_version,
            defaults=self.defaults,
            default_model=self.hook.default_model,
            limits=self.limits,
        )
        root = staging_root(self.staging_path, self.staging_conn_id)
        with ExitStack() as stack:
            if root is not None:
                base = JobStore(root / task_folder(context))
            else:
                local = stack.enter_context(tempfile.TemporaryDirectory(prefix="airflow-batches-"))
                base = JobStore(Path(local))
            job, prepared = stage_requests(
                base, self._records(), validator, on_invalid=self.on_invalid
            )
            self.log.info(
                "Validated %d request(s) for anthropic-version %s: %d batch(es) to submit, "
                "fingerprint %s",
                prepared.request_count,
                validator.anthropic_version,
                len(prepared.shards),
                prepared.fingerprint[:16],
            )
            if prepared.rejected_count:
                self._report_rejected(prepared.rejected_count, prepared.rejected, job, root)

            backend = self._ledger_backend(context, job, prepared.fingerprint, durable=root)
            ledger = backend.load()
            if ledger is None:
                ledger = new_ledger(prepared, anthropic_version=validator.anthropic_version)
            else:
                self.log.info(
                    "Found this job's ledger from an earlier try: %d/%d batch(es) already "
                    "created; re-attaching",
                    sum(1 for s in ledger.shards if s.batch_id),
                    len(ledger.shards),
                )
            headers = (
                {"anthropic-user-profile-id": self.user_profile_id}
                if self.user_profile_id
                else None
            )
            with self.hook.get_client() as client:
                submitter = JobSubmitter(
                    client,
                    backend,
                    lambda: job.path(REQUESTS_FILE).open("rb"),
                    create_attempts=self.create_attempts,
                    max_rate_limit_wait=self.max_rate_limit_wait,
                    clock_skew=timedelta(seconds=self.clock_skew_seconds),
                    extra_headers=headers,
                    logger=self.log,
                )
                ledger = submitter.submit(ledger)
            descriptor = self._descriptor(ledger, job, root)
        self.log.info(
            "Job %s: %d request(s) in batch(es) %s",
            descriptor.job_id,
            descriptor.request_count,
            ", ".join(descriptor.batch_ids),
        )
        return descriptor.model_dump(mode="json")

    def _ledger_backend(
        self, context: Context, job: JobStore, fingerprint: str, *, durable: Any
    ) -> LedgerBackend:
        key = f"airflow_batches.ledger.{job_key(fingerprint)}"
        return ledger_backend(context, key, durable, task=self)

    def _descriptor(self, ledger: Ledger, job: JobStore, root: Any) -> JobDescriptor:
        shared = root is not None
        return descriptor_from_ledger(
            ledger,
            conn_id=self.conn_id,
            job_dir=str(job.root) if shared else "",
            job_dir_conn_id=storage_conn_id(job.root) if shared else None,
            submitted_at=utcnow(),
            limits=self.limits,
        )

    def _report_rejected(self, count: int, shown: Sequence[Any], job: JobStore, root: Any) -> None:
        first = f"the first {len(shown)} " if count > len(shown) else ""
        where = f"; {first}listed in {job.path(REJECTED_FILE)}" if root is not None else ""
        self.log.warning(
            "Skipped %d invalid request(s) (on_invalid='skip')%s. First ones:\n  %s",
            count,
            where,
            "\n  ".join(str(p) for p in shown[:20]),
        )
