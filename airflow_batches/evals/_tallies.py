"""What an evaluation counts of each model, and the figures made of it for ``summary.json``.

A model's scores are tallied by category (:class:`ScoreTally`, one per category and one for
lines of none); the model's own scores are their sum, made once for the summary. Beside them:
its lines by result type, costs (``_costs``), cross-run cache hits, and with a baseline the
comparisons (compared, regressions, improvements, scores reused).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from airflow_batches.evals._costs import ModelCosts
from airflow_batches.evals._scorers import Score

__all__ = ["RESULT_TYPES", "ModelTally", "ScoreTally"]

RESULT_TYPES = ("succeeded", "errored", "expired", "canceled")


@dataclass
class ScoreTally:
    scored: int = 0
    passed: int = 0
    total: float = 0.0

    def add(self, score: Score) -> None:
        self.scored += 1
        self.passed += score.passed
        self.total += score.score

    @classmethod
    def sum(cls, tallies: Iterable[ScoreTally]) -> ScoreTally:
        whole = cls()
        for tally in tallies:
            whole.scored += tally.scored
            whole.passed += tally.passed
            whole.total += tally.total
        return whole

    def figures(self) -> dict[str, Any]:
        return {
            "scored": self.scored,
            "passed": self.passed,
            "pass_rate": ratio(self.passed, self.scored),
            "mean_score": ratio(self.total, self.scored),
        }


@dataclass
class ModelTally:
    costs: ModelCosts
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESULT_TYPES, 0))
    unscored: int = 0
    cached: int = 0
    groups: dict[str | None, ScoreTally] = field(default_factory=dict)
    """The scores by category (None: lines of no category); the model's are their sum."""
    regressions: int = 0
    improvements: int = 0
    compared: int = 0
    reused: int = 0

    @property
    def scores(self) -> ScoreTally:
        return ScoreTally.sum(self.groups.values())

    def merge(self, other: ModelTally) -> None:
        """Take in the lines of ``other`` (unscored ones: errored, expired, canceled)."""
        for kind, n in other.counts.items():
            self.counts[kind] = self.counts.get(kind, 0) + n
        self.costs.merge(other.costs)
        self.unscored += other.unscored

    def figures(self, *, compared: bool) -> dict[str, Any]:
        """The model's entry in the summary's ``models`` (``compared``: with a baseline)."""
        costs = self.costs.figures()
        requests = sum(self.counts.values())
        effective = costs["cost_usd"] + costs["cost_avoided_usd"]
        scores = self.scores
        categories = sorted(
            ((k, g) for k, g in self.groups.items() if k is not None), key=lambda kg: kg[0]
        )
        figures = {
            "requests": requests,
            "counts": dict(self.counts),
            **scores.figures(),
            "failed": scores.scored - scores.passed,
            "unscored": self.unscored,
            "cost_usd": costs["cost_usd"],
            "cost_avoided_usd": costs["cost_avoided_usd"],
            "cost_per_correct_usd": round(effective / scores.passed, 8) if scores.passed else None,
            "cost_complete": costs["cost_complete"],
            "prompt_cache_hit_rate": costs["prompt_cache_hit_rate"],
            "cross_run_cache_hits": self.cached,
            "cross_run_cache_hit_rate": ratio(self.cached, requests),
            "categories": {k: g.figures() for k, g in categories},
        }
        if compared:
            figures["compared"] = self.compared
            figures["regressions"] = self.regressions
            figures["improvements"] = self.improvements
            figures["scores_reused"] = self.reused
        return figures


def ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 6) if whole else None
