"""Evaluations over a job's results: scorers, per-model summaries, run-over-run, the report.

No Airflow import: ``EvaluateResultsOperator`` (``airflow_batches.operators.evaluate``) is the
Airflow shell over :func:`evaluate_job`. See docs/evals.md.
"""

from airflow_batches.evals._builtin import (
    by_category,
    contains,
    exact_match,
    extract_json,
    json_schema,
    last_number,
    numeric,
    regex,
    resolve_scorer,
)
from airflow_batches.evals._compare import Baseline, Thresholds, deltas
from airflow_batches.evals._evaluate import Evaluation, EvaluationError
from airflow_batches.evals._report import render_report
from airflow_batches.evals._run import EvalSettings, evaluate_job
from airflow_batches.evals._scorers import EvalResult, Score, Scorer, ScorerError, to_score
from airflow_batches.evals._svg import line_chart

__all__ = [
    "Baseline",
    "EvalResult",
    "EvalSettings",
    "Evaluation",
    "EvaluationError",
    "Score",
    "Scorer",
    "ScorerError",
    "Thresholds",
    "by_category",
    "contains",
    "deltas",
    "evaluate_job",
    "exact_match",
    "extract_json",
    "json_schema",
    "last_number",
    "line_chart",
    "numeric",
    "regex",
    "render_report",
    "resolve_scorer",
    "to_score",
]
