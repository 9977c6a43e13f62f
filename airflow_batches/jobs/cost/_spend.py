"""The estimate's report and the spend guard that reads it.

:class:`Estimate` is what ``_estimate.CostEstimator`` finds: per model and in total, the
expected cost and the worst case at batch prices, and the expected usage at standard prices.
:func:`check_budget` decides, before anything is sent, whether a job may be.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from airflow_batches.api import BatchesError
from airflow_batches.api._format import round_or_none
from airflow_batches.api._pricing import unpriced_warning

__all__ = [
    "CostLimitExceededError",
    "Estimate",
    "ModelEstimate",
    "WorstCasePolicy",
    "check_budget",
    "output_tokens_from_manifest",
]

WorstCasePolicy = Literal["ignore", "warn", "fail"]
_ROUND: Final = 6


class CostLimitExceededError(BatchesError):
    """The job's estimated cost is over ``max_cost_usd``; nothing was sent."""


@dataclass(frozen=True)
class ModelEstimate:
    model: str
    requests: int
    tokens: Mapping[str, float]
    """Expected tokens: input, cache_write_5m, cache_write_1h, cache_read, output."""
    worst_output_tokens: float
    expected_usd: float | None
    worst_usd: float | None
    standard_usd: float | None
    """The expected usage at standard (non-batch) prices."""
    requests_by_tier: Mapping[str, int]
    tokenizer: str
    count_ratio: float | None = None
    """Counted / estimated input tokens of the sample, when one was counted."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "tokens": {k: round(v) for k, v in self.tokens.items()},
            "worst_output_tokens": round(self.worst_output_tokens),
            "expected_usd": round_or_none(self.expected_usd, _ROUND),
            "worst_usd": round_or_none(self.worst_usd, _ROUND),
            "standard_usd": round_or_none(self.standard_usd, _ROUND),
            "requests_by_tier": dict(self.requests_by_tier),
            "tokenizer": self.tokenizer,
            "count_ratio": None if self.count_ratio is None else round(self.count_ratio, 4),
        }


@dataclass(frozen=True)
class Estimate:
    """A job's cost before sending, at batch prices: expected and worst case."""

    requests: int
    models: Mapping[str, ModelEstimate]
    assumptions: list[str]
    warnings: list[str] = field(default_factory=list)

    @property
    def expected_usd(self) -> float:
        return sum(m.expected_usd or 0.0 for m in self.models.values())

    @property
    def worst_usd(self) -> float:
        return sum(m.worst_usd or 0.0 for m in self.models.values())

    @property
    def standard_usd(self) -> float:
        return sum(m.standard_usd or 0.0 for m in self.models.values())

    @property
    def unpriced_models(self) -> list[str]:
        return sorted(m for m, e in self.models.items() if e.expected_usd is None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "expected_usd": round(self.expected_usd, _ROUND),
            "worst_usd": round(self.worst_usd, _ROUND),
            "standard_usd": round(self.standard_usd, _ROUND),
            "saving_usd": round(self.standard_usd - self.expected_usd, _ROUND),
            "models": {m: e.to_dict() for m, e in sorted(self.models.items())},
            "unpriced_models": self.unpriced_models,
            "assumptions": list(self.assumptions),
            "warnings": list(self.warnings),
        }

    def summary(self) -> str:
        lines = [
            f"Cost estimate for {self.requests:,} request(s) at batch prices: expected "
            f"${self.expected_usd:,.4f}, worst case ${self.worst_usd:,.4f} (no cache hits, "
            f"output at max_tokens); the expected usage at standard prices "
            f"${self.standard_usd:,.4f} (saving ${self.standard_usd - self.expected_usd:,.4f})"
        ]
        for name, m in sorted(self.models.items()):
            cost = (
                "unpriced"
                if m.expected_usd is None
                else f"expected ${m.expected_usd:,.4f}, worst ${m.worst_usd or 0:,.4f}"
            )
            tiers = "" if len(m.requests_by_tier) <= 1 else f" {dict(m.requests_by_tier)}"
            t = m.tokens
            lines.append(
                f"  {name}: {m.requests:,} request(s){tiers}, ~{t['input']:,.0f} input + "
                f"{t['cache_write_5m'] + t['cache_write_1h']:,.0f} cache-write + "
                f"{t['cache_read']:,.0f} cache-read + {t['output']:,.0f} output tokens; {cost}"
            )
        lines += [f"  assumption: {a}" for a in self.assumptions]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def check_budget(
    estimate: Estimate,
    *,
    max_cost_usd: float | None,
    worst_case: WorstCasePolicy = "warn",
    outcome: str = "nothing was submitted",
) -> list[str]:
    """Raise :class:`CostLimitExceededError` when the job may not be sent; else warnings.

    The expected cost over ``max_cost_usd`` always fails; the worst case over it fails, warns
    or is ignored by ``worst_case``. With a limit set, requests of an unpriced model fail too:
    their cost cannot be checked against it. ``outcome`` ends the error: what the refusal
    means where it happens.
    """
    if max_cost_usd is None:
        return []
    figures = (
        f"expected ${estimate.expected_usd:,.4f}, worst case ${estimate.worst_usd:,.4f}, "
        f"max_cost_usd ${max_cost_usd:,.4f}"
    )
    unpriced = estimate.unpriced_models
    if unpriced:
        raise CostLimitExceededError(
            f"cannot check the job against max_cost_usd: {unpriced_warning(unpriced)} "
            f"({figures} for the priced models); {outcome}"
        )
    if estimate.expected_usd > max_cost_usd:
        raise CostLimitExceededError(
            f"the job's expected cost is over max_cost_usd ({figures}); {outcome}"
            f"\n{estimate.summary()}"
        )
    if estimate.worst_usd > max_cost_usd:
        if worst_case == "fail":
            raise CostLimitExceededError(
                f"the job's worst-case cost is over max_cost_usd and worst_case='fail' "
                f"({figures}); {outcome}\n{estimate.summary()}"
            )
        if worst_case == "warn":
            return [f"the job's worst-case cost is over max_cost_usd ({figures})"]
    return []


def output_tokens_from_manifest(manifest: Mapping[str, Any]) -> dict[str, int]:
    """Mean output tokens per request of each model in a previous job's manifest (or tally
    summary), to calibrate the next estimate's ``expected_output_tokens``."""
    models = manifest.get("usage_by_model", manifest.get("models", {}))
    out: dict[str, int] = {}
    for model, usage in dict(models).items():
        requests = int(usage.get("requests") or 0)
        if requests:
            out[model] = max(1, round(int(usage.get("output_tokens") or 0) / requests))
    return out
