"""What a job will cost before it is sent: the estimate (``_estimate``), the spend guard
(``_spend``) and the ``airflow-batches estimate`` command (``_cli``)."""

from __future__ import annotations

from airflow_batches.jobs.cost._cli import estimate_main
from airflow_batches.jobs.cost._estimate import CostEstimator
from airflow_batches.jobs.cost._spend import (
    CostLimitExceededError,
    Estimate,
    WorstCasePolicy,
    check_budget,
    output_tokens_from_manifest,
)

__all__ = [
    "CostEstimator",
    "CostLimitExceededError",
    "Estimate",
    "WorstCasePolicy",
    "check_budget",
    "estimate_main",
    "output_tokens_from_manifest",
]
