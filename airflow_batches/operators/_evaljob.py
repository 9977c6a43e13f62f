"""What a submission adds for evaluations: the model matrix and the cross-run cache, from the
operator's parameters (``SubmitBatchOperator(models=..., cache_path=...)``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from airflow_batches.hooks.batches import MessageBatchesHook
from airflow_batches.jobs.cache import CacheStep, CrossRunCache, endpoint_identity
from airflow_batches.jobs.cost import CostEstimator
from airflow_batches.jobs.prepare import Limits, ModelMatrix, RequestValidator
from airflow_batches.operators._common import parse_text, storage_path


def model_matrix(models: Sequence[str | Mapping[str, Any]] | str | None) -> ModelMatrix | None:
    """The matrix of ``models`` (a list, or the text a template rendered it to), or None."""
    if not models:
        return None
    if isinstance(models, str):
        models = parse_text(models) if models.lstrip().startswith("[") else [models]
    return ModelMatrix.of(list(models))


def cache_step(
    cache_path: Any,
    conn_id: str | None,
    *,
    root: Any,
    hook: MessageBatchesHook,
    limits: Limits,
    estimator: CostEstimator,
    matrix: ModelMatrix | None,
    max_age: timedelta | None = None,
    max_bytes: int | None = None,
) -> CacheStep | None:
    """The cross-run cache's step of the submission, or None without a ``cache_path``.

    The requests it cannot answer are shown to the cost estimate as they are planned for
    sending (``sender``'s observers; its limits plan their batches): the estimate and the spend
    guard see only what is sent.
    """
    if not cache_path:
        return None
    if root is None:
        raise ValueError(
            "cache_path needs a shared staging_path (or [airflow_batches] staging_path): the "
            "fetch reads the cached results from the job's staged folder"
        )
    path = storage_path(cache_path, conn_id)
    assert path is not None
    cache = CrossRunCache(
        path,
        endpoint=endpoint_identity(hook.config.base_url, hook.config.workspace_id),
        anthropic_version=hook.anthropic_version,
        betas=hook.config.betas,
        conn_id=conn_id,
        max_age=max_age,
        max_bytes=max_bytes,
    )
    sender = RequestValidator(
        anthropic_version=hook.anthropic_version, limits=limits, observers=[estimator]
    )
    return CacheStep(cache, sender, matrix.part_of if matrix is not None else None)


def cache_bounds(
    max_age: timedelta | float | None, max_bytes: int | None
) -> tuple[timedelta | None, int | None]:
    """``cache_max_age`` (a timedelta, or seconds) and ``cache_max_bytes``, checked."""
    age = timedelta(seconds=max_age) if isinstance(max_age, int | float) else max_age
    if age is not None and (not isinstance(age, timedelta) or age <= timedelta(0)):
        raise ValueError(f"cache_max_age must be a positive timedelta or seconds, got {max_age!r}")
    if max_bytes is not None and (
        isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0
    ):
        raise ValueError(f"cache_max_bytes must be a positive number of bytes, got {max_bytes!r}")
    return age, max_bytes
