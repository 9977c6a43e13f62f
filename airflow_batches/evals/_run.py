"""One evaluation of a fetched job, from its manifest to ``summary.json`` and ``report.html``.

:func:`evaluate_job` streams every results file the fetch published (or the results it
returned in XCom) through an :class:`~._evaluate.Evaluation`, compares with the baseline when
there is one, applies the thresholds, and writes beside each other in ``output``:
``scores.jsonl``, ``regressions.jsonl`` (with a baseline), ``summary.json`` and
``report.html``, each atomically. No Airflow here: the operator gives the paths.

``summary.json``: ``summary_version``, ``run`` (who evaluated: dag, run, task, job), ``scorer``,
``scorer_fingerprint`` (``_reuse``: None for a scorer that cannot be vouched for),
``pass_threshold``, ``evaluated_at``, ``lines``, ``models`` (per model: requests, counts by
result type, scored, passed, failed, unscored, pass_rate, mean_score, cost_usd,
cost_avoided_usd, cost_per_correct_usd, prompt_cache_hit_rate, cross_run_cache_hits and rate,
categories, and with a baseline compared / regressions / improvements), ``totals``,
``baseline`` (its source, run and models' figures) and ``deltas``, ``regressions`` (count,
per model, examples), ``gate`` (thresholds checked, violations), ``history`` (the last runs'
figures, oldest first), ``batches`` (id, model, link) and ``files``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from airflow_batches.api._pricing import PriceTable
from airflow_batches.evals._compare import (
    REGRESSIONS_FILE,
    REPORT_FILE,
    SCORES_FILE,
    SUMMARY_FILE,
    Baseline,
    Thresholds,
    deltas,
    history,
)
from airflow_batches.evals._costs import fetched_costs
from airflow_batches.evals._evaluate import Evaluation
from airflow_batches.evals._report import render_report
from airflow_batches.evals._reuse import scorer_fingerprint
from airflow_batches.evals._scorelines import score_entries
from airflow_batches.evals._scorers import Scorer
from airflow_batches.jobs import Lookahead, StoragePath, atomic_writer, child, open_to_read

__all__ = ["EvalSettings", "evaluate_job"]

SUMMARY_VERSION = 1
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class EvalSettings:
    """How to score and judge (see ``EvaluateResultsOperator``)."""

    scorer: Scorer
    prices: PriceTable
    pass_threshold: float = 1.0
    group_by: str | None = "category"
    thresholds: Thresholds = field(default_factory=Thresholds)
    max_examples: int = 50
    reuse_scores: bool = True
    """Take the baseline's score of an unchanged answer (``_reuse``)."""

    @property
    def fingerprint(self) -> str | None:
        return scorer_fingerprint(
            self.scorer, pass_threshold=self.pass_threshold, group_by=self.group_by
        )


def _lines(paths: Iterable[StoragePath]) -> Iterator[bytes]:
    for path in paths:
        with open_to_read(path) as stream:
            for line in stream:
                data = line.rstrip(b"\r\n")
                if data and not data.isspace():
                    yield data


def _scores(path: StoragePath) -> Iterator[tuple[str, bytes]]:
    with open_to_read(path) as stream:
        yield from score_entries(stream)


def default_model(manifest: Mapping[str, Any]) -> str | None:
    """The model of a job's lines that name none (a job of one model), else None."""
    if manifest.get("matrix"):
        return None
    models = list(manifest.get("usage_by_model") or {})
    return models[0] if len(models) == 1 else None


def batch_list(
    manifest: Mapping[str, Any], url_of: Callable[[str], str | None]
) -> list[dict[str, Any]]:
    """Every batch of the job, with its matrix models and a link to it. A batch holds one
    model's requests (``model``); one that held several (a follow-up of a release before
    follow-ups were sent per model) names them all in ``models`` and none in ``model``."""
    models_of: dict[str, list[str]] = {}
    for label, m in (manifest.get("matrix") or {}).items():
        for b in m["batch_ids"]:
            models_of.setdefault(b, []).append(label)
    out = []
    for b in manifest.get("batch_ids", []):
        labels = models_of.get(b, [])
        model = labels[0] if len(labels) == 1 else None
        out.append({"id": b, "model": model, "models": labels, "url": url_of(b)})
    return out


def evaluate_job(
    manifest: Mapping[str, Any],
    settings: EvalSettings,
    *,
    output: StoragePath,
    result_files: Sequence[StoragePath] = (),
    results: Sequence[Any] | None = None,
    baseline: Baseline | None = None,
    run: Mapping[str, Any] | None = None,
    url_of_batch: Callable[[str], str | None] = lambda batch_id: None,
    url_of_file: Callable[[StoragePath], str] = str,
    manifest_path: StoragePath | None = None,
) -> dict[str, Any]:
    """Score, compare, judge and write (see the module docstring); returns the summary."""
    order = list((manifest.get("matrix") or {}).keys())
    files = {
        "scores": child(output, SCORES_FILE),
        "summary": child(output, SUMMARY_FILE),
        "report": child(output, REPORT_FILE),
    }
    if baseline is not None:
        files["regressions"] = child(output, REGRESSIONS_FILE)
    fingerprint = settings.fingerprint
    reuse = (
        settings.reuse_scores
        and fingerprint is not None
        and baseline is not None
        and baseline.summary.get("scorer_fingerprint") == fingerprint
    )
    with ExitStack() as stack:
        index = None
        if baseline is not None and baseline.scores is not None:
            # Last night's scores are in about tonight's order: read alongside (Lookahead).
            index = stack.enter_context(Lookahead(functools.partial(_scores, baseline.scores)))
        scores_out = stack.enter_context(atomic_writer(files["scores"]))
        regressions_out = (
            stack.enter_context(atomic_writer(files["regressions"])) if index is not None else None
        )
        evaluation = Evaluation(
            settings.scorer,
            settings.prices,
            scores=scores_out,
            regressions=regressions_out,
            baseline=index,
            pass_threshold=settings.pass_threshold,
            default_model=default_model(manifest),
            group_by=settings.group_by,
            max_examples=settings.max_examples,
            fingerprint=fingerprint,
            reuse=reuse,
            costs=fetched_costs(manifest, settings.prices),
        )
        source = (_encode(r) for r in results) if results is not None else _lines(result_files)
        for line in source:
            evaluation.add(line)
        summary = _summary(manifest, settings, evaluation, baseline, run, order)
    summary["batches"] = batch_list(manifest, url_of_batch)
    summary["files"] = {
        "manifest": url_of_file(manifest_path) if manifest_path is not None else None,
        **{k: url_of_file(v) for k, v in files.items()},
    }
    if "regressions" not in files:
        summary["files"].pop("regressions", None)
    with atomic_writer(files["summary"]) as out:
        out.write(_encode(summary))
    with atomic_writer(files["report"]) as out:
        out.write(render_report(summary).encode())
    return summary


def _summary(
    manifest: Mapping[str, Any],
    settings: EvalSettings,
    evaluation: Evaluation,
    baseline: Baseline | None,
    run: Mapping[str, Any] | None,
    order: list[str],
) -> dict[str, Any]:
    figures = evaluation.summary(order)
    models = figures["models"]
    before = baseline.summary if baseline is not None else None
    changes = deltas(models, before["models"]) if before is not None else {}
    thresholds = settings.thresholds
    violations = thresholds.violations(models, changes)
    regressed = {label: m.get("regressions", 0) for label, m in models.items()}
    return {
        "summary_version": SUMMARY_VERSION,
        "run": {**(run or {}), "job_id": manifest.get("job_id")},
        "evaluated_at": datetime.now(UTC).isoformat(),
        "scorer": repr(settings.scorer),
        "scorer_fingerprint": evaluation.fingerprint,
        "pass_threshold": settings.pass_threshold,
        "group_by": settings.group_by,
        **figures,
        "baseline": {
            "source": baseline.source,
            "run_id": baseline.run_id,
            "report_url": (before or {}).get("files", {}).get("report"),
            "models": (before or {}).get("models"),
        }
        if baseline is not None
        else None,
        "deltas": changes,
        "regressions": {
            "count": sum(regressed.values()),
            "by_model": regressed,
            "examples": evaluation.examples,
        }
        if baseline is not None
        else None,
        "gate": {
            "checked": thresholds.active,
            "metric": thresholds.metric,
            "min_score": thresholds.min_score,
            "max_regression": thresholds.max_regression,
            "violations": violations,
        },
        "history": history(before),
        "manifest": {
            "job_id": manifest.get("job_id"),
            "cost_usd": manifest.get("cost_usd"),
            "cache": manifest.get("cache"),
        },
    }
