"""Run over run: this run's summary against the previous one, and the gates on it.

The *baseline* is an earlier run's ``summary.json`` (a folder holding one will do), found by
the operator through its Asset's latest event or given as a ``baseline`` path. Its
``scores.jsonl`` (named in its ``files``) gives each request's previous score, which
``_evaluate`` compares request by request. Here:

* :func:`deltas`: per model present in both runs, this run minus the baseline, for the pass
  rate, the mean score, the cost per correct answer and the cost;
* :class:`Thresholds`: ``min_score`` (each model's score must reach it) and
  ``max_regression`` (no model's score may drop by more than this against the baseline); the
  score is the mean score, or the pass rate with ``metric="pass_rate"``; one value for every
  model or one per model label;
* :func:`history`: the figures of the last runs, carried from summary to summary (so a report
  can chart them with only the baseline at hand).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from airflow_batches.jobs import StoragePath, child, fresh

__all__ = ["SUMMARY_FILE", "Baseline", "Thresholds", "brief", "deltas", "history"]

MANIFEST_NAME = "manifest.json"
SUMMARY_FILE = "summary.json"
SCORES_FILE = "scores.jsonl"
REGRESSIONS_FILE = "regressions.jsonl"
REPORT_FILE = "report.html"
HISTORY_RUNS = 30
DELTA_METRICS = ("pass_rate", "mean_score", "cost_per_correct_usd", "cost_usd")
BRIEF_METRICS = (
    "pass_rate",
    "mean_score",
    "cost_usd",
    "cost_per_correct_usd",
    "prompt_cache_hit_rate",
    "cross_run_cache_hit_rate",
)
Metric = Literal["mean_score", "pass_rate"]


@dataclass
class Baseline:
    """An earlier run's summary, and where its per-request scores are."""

    summary: dict[str, Any]
    source: str
    scores: StoragePath | None

    @classmethod
    def load(cls, path: StoragePath) -> Baseline | None:
        """The summary at ``path`` (a ``summary.json``, or a folder holding one); None if
        there is none there."""
        target = path if path.name.endswith(".json") else child(path, SUMMARY_FILE)
        if not fresh(target).exists():
            return None
        with target.open("rb") as stream:
            summary = json.loads(stream.read())
        if not isinstance(summary, dict) or "models" not in summary:
            raise ValueError(f"{target} is not an evaluation summary (no 'models')")
        scores = child(target.parent, SCORES_FILE)
        return cls(summary, str(target), scores if fresh(scores).exists() else None)

    @property
    def run_id(self) -> str | None:
        run = self.summary.get("run") or {}
        return run.get("run_id") if isinstance(run, dict) else None


def deltas(current: Mapping[str, Any], baseline: Mapping[str, Any]) -> dict[str, Any]:
    """Per model in both runs: ``{metric: this - baseline}`` (None where either is None)."""
    out: dict[str, Any] = {}
    for label, now in current.items():
        before = baseline.get(label)
        if not isinstance(before, Mapping):
            continue
        entry: dict[str, Any] = {}
        for metric in DELTA_METRICS:
            a, b = now.get(metric), before.get(metric)
            entry[metric] = round(a - b, 8) if a is not None and b is not None else None
            entry[f"{metric}_before"] = b
        out[label] = entry
    return out


def _per_model(value: float | Mapping[str, float] | None, label: str) -> float | None:
    if value is None or isinstance(value, int | float):
        return value
    return value.get(label, value.get("*"))


@dataclass(frozen=True)
class Thresholds:
    """Gates on a run's figures; see the module docstring."""

    min_score: float | Mapping[str, float] | None = None
    max_regression: float | Mapping[str, float] | None = None
    metric: Metric = "mean_score"

    def __post_init__(self) -> None:
        if self.metric not in ("mean_score", "pass_rate"):
            raise ValueError(f"metric must be 'mean_score' or 'pass_rate', got {self.metric!r}")

    @property
    def active(self) -> bool:
        return self.min_score is not None or self.max_regression is not None

    def violations(self, models: Mapping[str, Any], changes: Mapping[str, Any]) -> list[str]:
        """What this run breaks, one sentence per model and gate."""
        out: list[str] = []
        metric = self.metric
        for label, figures in models.items():
            value = figures.get(metric)
            floor = _per_model(self.min_score, label)
            if floor is not None and (value is None or value < floor):
                shown = "none scored" if value is None else f"{value:.4f}"
                out.append(f"{label}: {metric} {shown} is below the minimum {floor:.4f}")
            limit = _per_model(self.max_regression, label)
            change = (changes.get(label) or {}).get(metric)
            if limit is not None and change is not None and -change > limit + 1e-12:
                before = changes[label][f"{metric}_before"]
                out.append(
                    f"{label}: {metric} fell by {-change:.4f} (from {before:.4f} to "
                    f"{value:.4f}); at most {limit:.4f} is allowed"
                )
        return out


def brief(summary: Mapping[str, Any]) -> dict[str, Any]:
    """One run's headline figures, as kept in the history."""
    run = summary.get("run") or {}
    return {
        "run_id": run.get("run_id"),
        "evaluated_at": summary.get("evaluated_at"),
        "models": {
            label: {k: figures.get(k) for k in BRIEF_METRICS}
            for label, figures in (summary.get("models") or {}).items()
        },
    }


def history(baseline: Mapping[str, Any] | None, keep: int = HISTORY_RUNS) -> list[dict[str, Any]]:
    """The runs before this one, oldest first: the baseline's own history and the baseline."""
    if baseline is None:
        return []
    earlier = [dict(h) for h in baseline.get("history") or () if isinstance(h, Mapping)]
    return [*earlier, brief(baseline)][-keep:]
