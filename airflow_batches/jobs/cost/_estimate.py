"""What a job will cost, before anything is sent: an expected figure and a worst case.

:class:`CostEstimator` is a ``RequestValidator`` observer: it sees every request that passed
validation, in the same single pass, and keeps a few counters per model and price tier.

- Input tokens come from the request bytes, block by block as the API caches them, at the
  bytes per token of the model's tokenizer family (Haiku 5.5 counts about 30% more than Haiku
  4.5 for the same text). Optionally, a sample of requests per model is counted with the
  token-counting endpoint (free, but rate-limited) and every count of that model is scaled by
  the ratio found.
- Expected: a prefix at a cache breakpoint seen earlier in the job is a cache read, else a
  write (the API's batches cache best-effort: hit rates vary, so the bill may be higher);
  output at ``expected_output_tokens`` (per request, or per model, capped at ``max_tokens``),
  else at ``output_fraction`` of ``max_tokens`` (one for all, or one per model).
- Worst case: no cache hit at all (every breakpoint written) and output at ``max_tokens``.

The price tier of a request (Haiku 5.5) is chosen from its own estimated prompt size.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from airflow_batches.api._pricing import (
    US_INFERENCE_GEO,
    ModelPrice,
    PriceTable,
    load_price_table,
    tokens_cost,
    unpriced_warning,
)
from airflow_batches.api._prompt import CacheLedger, CacheUsage, prompt_breakpoints
from airflow_batches.api._rules import RulesTable, load_rules_table
from airflow_batches.jobs.cost._spend import Estimate, ModelEstimate

__all__ = ["COUNTED_KEYS", "DEFAULT_OUTPUT_FRACTION", "CostEstimator", "CountTokens"]

DEFAULT_OUTPUT_FRACTION: Final = 0.5
COUNTED_KEYS: Final = ("model", "messages", "system", "tools", "tool_choice", "thinking")
"""The params the token-counting endpoint is sent (it takes no max_tokens)."""

_USAGE: Final = ("input", "cache_write_5m", "cache_write_1h", "cache_read", "output")
_WORKSPACE: Final = "job"


@dataclass
class _Counts:
    requests: int = 0
    input: float = 0.0
    cache_write_5m: float = 0.0
    cache_write_1h: float = 0.0
    cache_read: float = 0.0
    output: float = 0.0

    def add(self, cache: CacheUsage, output: int) -> None:
        self.requests += 1
        self.input += cache.input_tokens
        self.cache_write_5m += cache.write_5m
        self.cache_write_1h += cache.write_1h
        self.cache_read += cache.read
        self.output += output

    def scaled(self, ratio: float) -> _Counts:
        """These counts with every input-side token count times ``ratio``."""
        return _Counts(
            self.requests,
            self.input * ratio,
            self.cache_write_5m * ratio,
            self.cache_write_1h * ratio,
            self.cache_read * ratio,
            self.output,
        )

    def cost(self, table: PriceTable, model: str, tier: int, us: bool, batch: bool) -> float:
        return tokens_cost(
            table[model].at_tier(tier),
            input_tokens=self.input,
            output_tokens=self.output,
            cache_write_5m_tokens=self.cache_write_5m,
            cache_write_1h_tokens=self.cache_write_1h,
            cache_read_tokens=self.cache_read,
            us_inference=us,
            batch=batch,
        )


CountTokens = Callable[[Mapping[str, Any]], int]
"""Counts a request's input tokens with the API (``params`` limited to :data:`COUNTED_KEYS`)."""


class CostEstimator:
    """Observer of ``RequestValidator``: accumulates the estimate during validation.

    Memory: a few counters per (model, tier, geography), one digest per distinct cached
    prefix, and up to ``sample_size`` requests per model kept for token counting.
    """

    def __init__(
        self,
        *,
        prices: PriceTable | None = None,
        rules: RulesTable | None = None,
        expected_output_tokens: int | Mapping[str, int] | None = None,
        output_fraction: float | Mapping[str, float] = DEFAULT_OUTPUT_FRACTION,
        cache_min_tokens: int = 1024,
        sample_size: int = 0,
        seed: int = 0,
    ) -> None:
        fractions = (
            output_fraction.values() if isinstance(output_fraction, Mapping) else [output_fraction]
        )
        if not all(0 < f <= 1 for f in fractions):
            raise ValueError("output_fraction must be in (0, 1]")
        self.prices = prices if prices is not None else load_price_table()
        self.rules = rules if rules is not None else load_rules_table()
        self.expected_output_tokens = expected_output_tokens
        self.output_fraction = output_fraction
        self.cache_min_tokens = cache_min_tokens
        self.sample_size = sample_size
        self._rng = random.Random(seed)
        self._ledger = CacheLedger()
        self._expected: dict[tuple[str, int, bool], _Counts] = {}
        self._worst: dict[tuple[str, int, bool], _Counts] = {}
        self._seen: dict[str, int] = {}
        self._samples: dict[str, list[tuple[Mapping[str, Any], int]]] = {}
        self._models: dict[str, tuple[float, ModelPrice | None, Any, float]] = {}
        self.requests = 0

    def _model(self, model: str) -> tuple[float, ModelPrice | None, Any, float]:
        """Per model, looked up once: bytes per token, price, expected output, its share."""
        info = self._models.get(model)
        if info is None:
            fraction = _per_model(self.output_fraction, model, self.prices)
            info = self._models[model] = (
                self.rules.tokenizer(model).bytes_per_token,
                self.prices.get(model),
                _per_model(self.expected_output_tokens, model, self.prices),
                fraction or DEFAULT_OUTPUT_FRACTION,
            )
        return info

    def __call__(self, custom_id: str, params: Mapping[str, Any], line: bytes) -> None:
        model = str(params.get("model"))
        max_tokens = int(params.get("max_tokens") or 1)
        per_token, price, want, fraction = self._model(model)
        breakpoints, total = prompt_breakpoints(params, model, per_token)
        if breakpoints:
            min_tokens = self.cache_min_tokens
            expected = self._ledger.account(_WORKSPACE, breakpoints, total, 0.0, min_tokens)
            worst = CacheLedger().account(_WORKSPACE, breakpoints, total, 0.0, min_tokens)
        else:
            expected = worst = CacheUsage(total, 0, 0, 0)
        tier = price.tier_index(total) if price is not None and price.tiers else 0
        key = (model, tier, params.get("inference_geo") == US_INFERENCE_GEO)
        output = (
            max(1, round(max_tokens * fraction)) if want is None else min(int(want), max_tokens)
        )
        counts = self._expected.get(key)
        if counts is None:
            counts = self._expected[key] = _Counts()
            self._worst[key] = _Counts()
        counts.add(expected, output)
        self._worst[key].add(worst, max_tokens)
        self.requests += 1
        if self.sample_size:
            self._sample(model, params, total)

    def _sample(self, model: str, params: Mapping[str, Any], total: int) -> None:
        # Reservoir sampling: every request of a model is equally likely to be counted.
        seen = self._seen[model] = self._seen.get(model, 0) + 1
        kept = self._samples.setdefault(model, [])
        item = ({k: params[k] for k in COUNTED_KEYS if k in params}, total)
        if len(kept) < self.sample_size:
            kept.append(item)
        else:
            slot = self._rng.randrange(seen)
            if slot < self.sample_size:
                kept[slot] = item

    def estimate(self, count_tokens: CountTokens | None = None) -> Estimate:
        """The estimate of everything observed; ``count_tokens`` counts the samples."""
        ratios = self._count(count_tokens) if count_tokens is not None else {}
        models: dict[str, ModelEstimate] = {}
        names = sorted({m for m, _, _ in self._expected})
        for name in names:
            models[name] = self._model_estimate(name, ratios.get(name))
        assumptions = [self._output_assumption(), self._tokenizer_assumption(names)]
        if ratios:
            shown = ", ".join(f"{m} x{r:.3f}" for m, r in sorted(ratios.items()))
            assumptions.append(f"input scaled by counted / estimated tokens of a sample: {shown}")
        unpriced = [m for m, e in models.items() if e.expected_usd is None]
        warnings = [unpriced_warning(unpriced)] if unpriced else []
        return Estimate(self.requests, models, assumptions, warnings)

    def _model_estimate(self, name: str, ratio: float | None) -> ModelEstimate:
        priced = self.prices.get(name)
        scale = ratio or 1.0
        tokens = dict.fromkeys(_USAGE, 0.0)
        worst_output = 0.0
        requests = 0
        by_tier: dict[str, int] = {}
        usd: dict[str, float] = {"expected": 0.0, "worst": 0.0, "standard": 0.0}
        for (model, tier, us), observed in self._expected.items():
            if model != name:
                continue
            counts = observed.scaled(scale)
            worst = self._worst[(model, tier, us)].scaled(scale)
            requests += counts.requests
            worst_output += worst.output
            for k in _USAGE:
                tokens[k] += getattr(counts, k)
            label = priced.tier_label(tier) if priced is not None else "all"
            by_tier[label] = by_tier.get(label, 0) + counts.requests
            if priced is not None:
                usd["expected"] += counts.cost(self.prices, name, tier, us, batch=True)
                usd["worst"] += worst.cost(self.prices, name, tier, us, batch=True)
                usd["standard"] += counts.cost(self.prices, name, tier, us, batch=False)
        known = priced is not None
        return ModelEstimate(
            model=name,
            requests=requests,
            tokens=tokens,
            worst_output_tokens=worst_output,
            expected_usd=usd["expected"] if known else None,
            worst_usd=usd["worst"] if known else None,
            standard_usd=usd["standard"] if known else None,
            requests_by_tier=by_tier,
            tokenizer=self.rules.tokenizer_name(name),
            count_ratio=ratio,
        )

    def _count(self, count_tokens: CountTokens) -> dict[str, float]:
        ratios: dict[str, float] = {}
        for model, kept in sorted(self._samples.items()):
            counted = sum(count_tokens(params) for params, _ in kept)
            estimated = sum(total for _, total in kept)
            if estimated and counted:
                ratios[model] = counted / estimated
        return ratios

    def _output_assumption(self) -> str:
        want = self.expected_output_tokens
        if want is None:
            share = self.output_fraction
            shown = (
                ", ".join(f"{m} {f:.0%}" for m, f in sorted(share.items()))
                if isinstance(share, Mapping)
                else f"{share:.0%}"
            )
            return (
                f"output at {shown} of each request's max_tokens "
                "(pass expected_output_tokens to calibrate, e.g. from a previous manifest)"
            )
        if isinstance(want, Mapping):
            shown = ", ".join(f"{m} {n:,}" for m, n in sorted(want.items()))
            return f"output per request (capped at max_tokens): {shown}"
        return f"output {int(want):,} tokens per request (capped at max_tokens)"

    def _tokenizer_assumption(self, names: list[str]) -> str:
        families = sorted({self.rules.tokenizer_name(m) for m in names})
        shown = ", ".join(
            f"{f} {self.rules.tokenizers[f].bytes_per_token:g} bytes/token" for f in families
        )
        return f"input tokens from request bytes: {shown or 'no requests'}"


def _per_model(value: Any, model: str, prices: PriceTable) -> Any:
    """``value``, or its entry for ``model`` (as sent, or its price-table family)."""
    if not isinstance(value, Mapping):
        return value
    return value.get(model, value.get(prices.resolve(model) or model))
