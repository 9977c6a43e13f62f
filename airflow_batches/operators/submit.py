"""SubmitBatchOperator: any number of requests in, a small job descriptor out."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_batches._compat import BaseOperator, ObjectStoragePath, conf
from airflow_batches.api._count import count_tokens
from airflow_batches.api._pricing import load_price_table
from airflow_batches.api._rules import load_rules_table
from airflow_batches.hooks.batches import MessageBatchesHook
from airflow_batches.jobs import JobDescriptor, JobStore, job_key
from airflow_batches.jobs.cost import CostEstimator, WorstCasePolicy, check_budget
from airflow_batches.jobs.prepare import (
    REJECTED_FILE,
    Limits,
    ModelMatrix,
    OnInvalid,
    ParamCheck,
    Parts,
    RequestValidator,
    Sidecar,
    Staged,
    envelope_parts,
    model_rules_check,
)
from airflow_batches.jobs.submit import (
    Ledger,
    LedgerBackend,
    Registry,
    batch_infos,
    descriptor_from_ledger,
    new_ledger,
    submit_job,
    utcnow,
)
from airflow_batches.operators._approval import ApprovalMixin, Approved
from airflow_batches.operators._common import (
    ledger_backend,
    staging_root,
    state_store,
    storage_conn_id,
    task_folder,
)
from airflow_batches.operators._destination import check_downstream_destinations
from airflow_batches.operators._evaljob import cache_bounds, cache_step, model_matrix
from airflow_batches.operators._failures import task_errors
from airflow_batches.operators._lineage import SubmitLineage
from airflow_batches.operators._links import SubmitBatchesLink
from airflow_batches.operators._request_source import report_rejected, request_records

if TYPE_CHECKING:
    from airflow_batches._compat import Context


class SubmitBatchOperator(SubmitLineage, ApprovalMixin, BaseOperator):
    """Validate requests and submit them as one logical job of one or more batches.

    Give the requests either inline / from XCom (``requests``) or as a JSONL file at any
    object-storage path (``requests_path``), each item ``{"custom_id": ..., "params": {...}}``.
    A file is UTF-8 JSONL, one request per line: CRLF endings are fine; blank or
    whitespace-only lines are skipped, and line numbers in errors still count them; a UTF-8
    byte-order mark at the very start of the file is dropped and refused anywhere else; gzip
    data is read decompressed whether or not the name ends in ``.gz``. Every request is
    validated strictly before anything is sent (no duplicate keys, valid UTF-8, no lone
    surrogates, no NaN, at most 100 levels of nesting, the per-model rules of the dated rules
    table; see docs/operators.md), and every problem is reported at once, naming the line or
    index, the custom_id and the field. Input over 100,000 requests or 256 MB is split into
    several batches. A retry of the task re-attaches to the batches already created (see
    docs/idempotency.md). Returns a job descriptor (batch ids, counts, fingerprint; never the
    requests) for ``BatchSensor`` and ``FetchResultsOperator``.

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
    :param max_cost_usd: spend guard: the task fails before any create, with the figures,
        when the job's expected cost (batch prices) is over it. The estimate (expected and
        worst case) is logged before any create and put in the job descriptor either way.
    :param worst_case: what a worst case (no cache hits, output at max_tokens) over
        ``max_cost_usd`` does: ``"warn"`` (default), ``"fail"`` or ``"ignore"``.
    :param approve_over_usd: ask a person (Airflow's human-in-the-loop) to approve a job whose
        expected cost is over it before anything is sent; ``approval_timeout`` bounds the
        wait, ``approvers`` names who may answer (``operators/_approval.ApprovalMixin``;
        docs/operators.md, *Spend approval*).
    :param disabled_model_rules: model rules (``airflow_batches/api/model_rules.toml``) to
        switch off, for the day the API changes before the table does: ``"forced_tool_use"``
        for every model, ``"claude-opus-5-5:forced_tool_use"`` for one.
    :param expected_output_tokens: output tokens a request is expected to produce (an int, or
        one per model), for the estimate; default half of each request's ``max_tokens``.
    :param count_tokens_sample: requests per model to count with the (free, rate-limited)
        token-counting endpoint to calibrate the estimate's input tokens; 0 counts none.
    :param models: a model matrix: send every request once per model, as one job (templated).
        Each entry is a model id or ``{"model", "label", "params"}``; the copy of request
        ``q1`` for ``models[i]`` has the custom_id ``m{i}_q1`` (``jobs/prepare/_matrix.py``),
        and each model's requests go in batches of their own.
    :param cache_path: a cross-run cache on shared storage (templated): a request identical
        to one already answered (same params after defaults, anthropic-version and betas) is
        answered from that result instead of being sent; needs a shared ``staging_path``.
    :param cache_conn_id: connection of ``cache_path``'s storage.
    :param cache_max_age: entries of the cache older than this (a timedelta, or seconds) are
        misses, and compaction deletes them; None (default): no bound.
    :param cache_max_bytes: stored results the cache keeps, newest first; older segments are
        misses and compacted away; None (default): no bound.
    """

    template_fields: Sequence[str] = (
        "requests",
        "requests_path",
        "defaults",
        "staging_path",
        "user_profile_id",
        "models",
        "cache_path",
    )
    template_fields_renderers = {"requests": "json", "defaults": "json"}
    operator_extra_links = (SubmitBatchesLink(),)
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
        max_cost_usd: float | None = None,
        worst_case: WorstCasePolicy = "warn",
        disabled_model_rules: Sequence[str] = (),
        expected_output_tokens: int | Mapping[str, int] | None = None,
        count_tokens_sample: int = 0,
        models: Sequence[str | Mapping[str, Any]] | None = None,
        cache_path: str | ObjectStoragePath | None = None,
        cache_conn_id: str | None = None,
        cache_max_age: timedelta | float | None = None,
        cache_max_bytes: int | None = None,
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
        if worst_case not in ("ignore", "warn", "fail"):
            raise ValueError(f"worst_case must be 'ignore', 'warn' or 'fail', got {worst_case!r}")
        self.max_cost_usd = max_cost_usd
        self.worst_case: WorstCasePolicy = worst_case
        self.disabled_model_rules = list(disabled_model_rules)
        self.expected_output_tokens = expected_output_tokens
        self.count_tokens_sample = count_tokens_sample
        self.models = models
        if isinstance(models, Sequence) and not isinstance(models, str):
            ModelMatrix.of(models)  # a bad entry fails at parse time, naming it
        self.cache_path = cache_path
        self.cache_conn_id = cache_conn_id
        self.cache_max_age, self.cache_max_bytes = cache_bounds(cache_max_age, cache_max_bytes)

    @cached_property
    def hook(self) -> MessageBatchesHook:
        return MessageBatchesHook(conn_id=self.conn_id)

    def _records(self) -> Iterator[tuple[str, Any]]:
        return request_records(self.requests, self.requests_path, self.requests_conn_id)

    def _preflight(self) -> tuple[ParamCheck, CostEstimator]:
        """The model-rules check and the cost estimator, from the configured tables."""
        rules_path = conf.get("airflow_batches", "model_rules_path", fallback=None) or None
        prices_path = conf.get("airflow_batches", "prices_path", fallback=None) or None
        table = load_rules_table(rules_path)
        check = model_rules_check(
            anthropic_version=self.hook.anthropic_version,
            betas=self.hook.config.betas,
            disabled=self.disabled_model_rules,
            table=table,
        )
        estimator = CostEstimator(
            prices=load_price_table(prices_path),
            rules=table,
            expected_output_tokens=self.expected_output_tokens,
            sample_size=self.count_tokens_sample,
        )
        return check, estimator

    def execute(self, context: Context) -> dict[str, Any]:
        return self.submit_approved(context, None)

    def submit_approved(self, context: Context, approved: Approved | None) -> dict[str, Any]:
        # A 404 while submitting is a young batch's read-after-create lag, never final.
        with task_errors(self.conn_id, not_found=lambda: False):
            check_downstream_destinations(self, context)
            with self.asking_for_approval(context):
                return self.keep_for_lineage("job", self._submit(context, approved))

    def _submit(self, context: Context, approved: Approved | None) -> dict[str, Any]:
        check, estimator = self._preflight()
        root = staging_root(self.staging_path, self.staging_conn_id)
        gate = self.spend_gate(state_store(context, root), approved)
        matrix = model_matrix(self.models)
        sidecar = Sidecar()
        cache = cache_step(
            self.cache_path,
            self.cache_conn_id,
            root=root,
            hook=self.hook,
            limits=self.limits,
            estimator=estimator,
            matrix=matrix,
            max_age=self.cache_max_age,
            max_bytes=self.cache_max_bytes,
        )
        validator = RequestValidator(
            anthropic_version=self.hook.anthropic_version,
            defaults=self.defaults,
            default_model=self.hook.default_model,
            limits=self.limits,
            checks=[check],
            observers=[] if cache is not None else [estimator],
            metadata=sidecar.metadata,
        )
        records = Parts(envelope_parts(self._records, sidecar, matrix))
        headers = (
            {"anthropic-user-profile-id": self.user_profile_id} if self.user_profile_id else None
        )

        estimates: list[Any] = []

        def staged(step: Staged) -> None:
            job, prepared = step.store, step.prepared
            batches = len(step.sent.shards) if step.sent is not None else 0
            if sidecar.with_metadata and root is None:
                raise ValueError(
                    f"{sidecar.with_metadata} request(s) carry metadata, which is kept on the "
                    "staging storage for the fetch to join: give a shared staging_path (or set "
                    "[airflow_batches] staging_path)"
                )
            self.log.info(
                "Validated %d request(s) for anthropic-version %s: %d batch(es) to submit, "
                "fingerprint %s%s",
                prepared.request_count,
                validator.anthropic_version,
                batches,
                prepared.fingerprint[:16],
                f"; models {', '.join(matrix.labels)}" if matrix is not None else "",
            )
            if prepared.rejected_count:
                where = job.path(REJECTED_FILE) if root is not None else None
                report_rejected(self.log, prepared.rejected_count, prepared.rejected, where)
            if self.count_tokens_sample and step.sent is not None:
                with self.hook.get_client() as counter:
                    estimate = estimator.estimate(lambda p: count_tokens(counter, p))
            else:
                estimate = estimator.estimate()
            estimates.append(estimate)
            self.log.info("%s", estimate.summary())
            for warning in check_budget(
                estimate, max_cost_usd=self.max_cost_usd, worst_case=self.worst_case
            ):
                self.log.warning("%s", warning)
            gate.check(estimate, prepared.fingerprint, batches)

        registry = self._registry(root)
        with ExitStack() as stack:
            if root is not None:
                base = JobStore(root / task_folder(context))
            else:
                local = stack.enter_context(tempfile.TemporaryDirectory(prefix="airflow-batches-"))
                base = JobStore(Path(local))
            client = stack.enter_context(self.hook.get_client())
            done = submit_job(
                records,
                validator,
                root=base,
                client=client,
                backend_for=lambda prepared, job: self._ledger_backend(
                    context, job, prepared.fingerprint, durable=root
                ),
                on_invalid=self.on_invalid,
                on_staged=staged,
                logger=self.log,
                sidecar=sidecar,
                cache=cache,
                create_attempts=self.create_attempts,
                max_rate_limit_wait=self.max_rate_limit_wait,
                clock_skew=timedelta(seconds=self.clock_skew_seconds),
                extra_headers=headers,
                registry=registry,
                job_id=task_folder(context),
            )
            descriptor = self._descriptor(done.ledger, done.store, root, registry, done.staged)
            descriptor.estimate = estimates[0].to_dict() if estimates else None
            descriptor.matrix = matrix.to_json() if matrix is not None else None
            descriptor.sidecar_file = sidecar.name if sidecar.count else ""
        self.log.info(
            "Job %s: %d request(s) in batch(es) %s%s",
            descriptor.job_id,
            descriptor.request_count,
            ", ".join(descriptor.batch_ids) or "(none)",
            f"; {descriptor.cache['hits']} answered from the cross-run cache"
            if descriptor.cache
            else "",
        )
        return descriptor.model_dump(mode="json")

    def _ledger_backend(
        self, context: Context, job: JobStore, fingerprint: str, *, durable: Any
    ) -> LedgerBackend:
        key = f"airflow_batches.ledger.{job_key(fingerprint)}"
        return ledger_backend(context, key, durable, task=self)

    def _registry(self, root: Any) -> Registry | None:
        if root is None:
            return None
        config = self.hook.config
        return Registry.at(root, config.base_url, config.workspace_id)

    def _descriptor(
        self,
        ledger: Ledger | None,
        job: JobStore,
        root: Any,
        registry: Registry | None,
        staged: Staged | None,
    ) -> JobDescriptor:
        shared = root is not None
        if ledger is None:  # nothing sent: every request came from the cache
            assert staged is not None
            ledger = new_ledger(staged.prepared, anthropic_version=self.hook.anthropic_version)
            ledger.shards = []
        descriptor = descriptor_from_ledger(
            ledger,
            conn_id=self.conn_id,
            job_dir=str(job.root) if shared else "",
            job_dir_conn_id=storage_conn_id(job.root) if shared else None,
            submitted_at=utcnow(),
            limits=self.limits,
        )
        if staged is not None and staged.cache is not None:
            # The job is every request; its batches hold only those the cache did not answer.
            descriptor.fingerprint = staged.prepared.fingerprint
            descriptor.job_id = job_key(staged.prepared.fingerprint)
            descriptor.request_count = staged.prepared.request_count
            descriptor.rejected_count = staged.prepared.rejected_count
            descriptor.batches = batch_infos(ledger, staged.sent_file)
            descriptor.cache = staged.cache.model_dump(mode="json")
        descriptor.registry_dir = str(registry.store.root) if registry else ""
        return descriptor
