"""Totals behind a job's manifest: counts, usage and cost of any number of result lines.

:class:`ResultTally` folds :class:`ResultRecord` values into counters whose size depends on the
number of distinct models, price tiers and error types, never on the number of lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from airflow_batches.api._format import round_or_none
from airflow_batches.api._models import RESULT_TYPES
from airflow_batches.api._pricing import (
    US_INFERENCE_GEO,
    ModelPrice,
    PriceTable,
    load_price_table,
    prompt_tokens_of,
    tokens_cost,
    unpriced_warning,
)
from airflow_batches.jobs.results._scan import UNKNOWN_ERROR_TYPE, ResultRecord

__all__ = ["ModelUsage", "ResultTally"]

_COST_DECIMALS: Final = 6
_RATE_DECIMALS: Final = 6


class ModelUsage:
    """Usage totals of the succeeded lines of one model (mutable, owned by a tally)."""

    __slots__ = (
        "cache_read_input_tokens",
        "cache_write_1h_tokens",
        "cache_write_5m_tokens",
        "input_tokens",
        "output_tokens",
        "requests",
        "web_fetch_requests",
        "web_search_requests",
    )

    def __init__(self) -> None:
        self.requests = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cache_write_5m_tokens = 0
        self.cache_write_1h_tokens = 0
        self.cache_read_input_tokens = 0
        self.web_search_requests = 0
        self.web_fetch_requests = 0

    def add(self, other: ModelUsage) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def cache_write_tokens(self) -> int:
        return self.cache_write_5m_tokens + self.cache_write_1h_tokens

    @property
    def cache_hit_rate(self) -> float | None:
        return _hit_rate(self.cache_read_input_tokens, self.input_tokens, self.cache_write_tokens)

    def cost(
        self,
        prices: PriceTable,
        model: str,
        *,
        us_inference: bool,
        tier: int = 0,
        batch: bool = True,
    ) -> float | None:
        """USD of these totals at ``tier``'s rates; None for a model the table does not know."""
        price = prices.get(model)
        if price is None:
            return None
        return tokens_cost(
            price.at_tier(min(tier, len(price.tiers))),
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_write_5m_tokens=self.cache_write_5m_tokens,
            cache_write_1h_tokens=self.cache_write_1h_tokens,
            cache_read_tokens=self.cache_read_input_tokens,
            web_search_requests=self.web_search_requests,
            web_fetch_requests=self.web_fetch_requests,
            us_inference=us_inference,
            batch=batch,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ModelUsage):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        fields = ", ".join(f"{n}={getattr(self, n)}" for n in _USAGE_KEYS)
        return f"ModelUsage({fields})"


_USAGE_KEYS: Final = (
    "requests",
    "input_tokens",
    "output_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "cache_read_input_tokens",
    "web_search_requests",
    "web_fetch_requests",
)


def _hit_rate(read: int, uncached: int, written: int) -> float | None:
    prompt = uncached + written + read
    return read / prompt if prompt else None


_Key = tuple[str, bool, int]
"""(model id as reported, inference_geo == "us", price tier)."""


class ResultTally:
    """Counts, usage and cost of any number of result lines, in constant memory.

    Only succeeded lines carry usage and cost: the API bills nothing else. Usage is kept per
    model, per inference geography (``"us"`` is dearer) and per price tier (Haiku 5.5 is
    priced by each request's own prompt size, so a line's tier is decided when it is added),
    and cost is computed from those totals when asked for, which is exact because cost is
    linear in every count within a tier. Costs come at batch prices (what is billed) and at
    standard prices (what the same usage costs outside a batch); the saving is the difference.

    The cache hit rate is ``cache_read / (input + cache_write_5m + cache_write_1h + cache_read)``
    summed over succeeded lines: the share of prompt tokens served from the cache (the API's
    ``input_tokens`` already excludes cached ones). It is None when that denominator is 0.
    """

    __slots__ = ("_counts", "_errors", "_price_of", "_prices", "_usage")

    def __init__(self, prices: PriceTable | None = None) -> None:
        self._prices = prices if prices is not None else load_price_table()
        self._price_of: dict[str, ModelPrice | None] = {}
        """The table's answer per model name seen (as many as ``_usage`` has models)."""
        self._counts: dict[str, int] = dict.fromkeys(RESULT_TYPES, 0)
        self._errors: dict[str, int] = {}
        self._usage: dict[_Key, ModelUsage] = {}

    @property
    def prices(self) -> PriceTable:
        return self._prices

    def add(self, record: ResultRecord) -> None:
        kind = record.result_type
        self._counts[kind] += 1
        if kind != "succeeded":
            if kind == "errored":
                error = record.error_type or UNKNOWN_ERROR_TYPE
                self._errors[error] = self._errors.get(error, 0) + 1
            return
        model = record.model or ""
        try:
            price = self._price_of[model]
        except KeyError:
            price = self._price_of[model] = self._prices.get(model)
        tier = 0
        if price is not None and price.tiers:
            written = record.cache_write_5m_tokens + record.cache_write_1h_tokens
            prompt = prompt_tokens_of(record.input_tokens, written, record.cache_read_input_tokens)
            tier = price.tier_index(prompt)
        key = (model, record.inference_geo == US_INFERENCE_GEO, tier)
        totals = self._usage.get(key)
        if totals is None:
            totals = self._usage[key] = ModelUsage()
        totals.requests += 1
        totals.input_tokens += record.input_tokens
        totals.output_tokens += record.output_tokens
        totals.cache_write_5m_tokens += record.cache_write_5m_tokens
        totals.cache_write_1h_tokens += record.cache_write_1h_tokens
        totals.cache_read_input_tokens += record.cache_read_input_tokens
        totals.web_search_requests += record.web_search_requests
        totals.web_fetch_requests += record.web_fetch_requests

    def merge(self, other: ResultTally) -> None:
        """Add ``other``'s totals to this tally (for a job of several batches); costs are
        priced with this tally's table, in the tiers ``other`` assigned its lines to."""
        for kind, n in other._counts.items():
            self._counts[kind] = self._counts.get(kind, 0) + n
        for error, n in other._errors.items():
            self._errors[error] = self._errors.get(error, 0) + n
        for key, usage in other._usage.items():
            mine = self._usage.get(key)
            if mine is None:
                mine = self._usage[key] = ModelUsage()
            mine.add(usage)

    # --- totals ---------------------------------------------------------------------------

    @property
    def lines(self) -> int:
        return sum(self._counts.values())

    @property
    def counts(self) -> Mapping[str, int]:
        """Lines by result type; all four types always present."""
        return dict(self._counts)

    @property
    def error_counts(self) -> Mapping[str, int]:
        """Errored lines by API error type, sorted by type."""
        return dict(sorted(self._errors.items()))

    @property
    def usage_by_model(self) -> Mapping[str, ModelUsage]:
        """Usage of succeeded lines per model id as reported, sorted by model."""
        merged: dict[str, ModelUsage] = {}
        for (model, _us, _tier), usage in sorted(self._usage.items()):
            merged.setdefault(model, ModelUsage()).add(usage)
        return merged

    def cost_by_model(self, *, batch: bool = True) -> Mapping[str, float | None]:
        """Full-precision USD per model id, at batch prices (``batch=False``: standard
        prices); None for a model the price table does not know."""
        costs: dict[str, float | None] = {}
        for (model, us, tier), usage in sorted(self._usage.items()):
            cost = usage.cost(self._prices, model, us_inference=us, tier=tier, batch=batch)
            if cost is None:
                costs[model] = None
            elif model not in costs:
                costs[model] = cost
            else:
                previous = costs[model]
                costs[model] = None if previous is None else previous + cost
        return costs

    def tiers_by_model(self) -> Mapping[str, Mapping[int, tuple[int, float]]]:
        """For models priced in tiers: requests and batch-price USD per tier index."""
        out: dict[str, dict[int, tuple[int, float]]] = {}
        for (model, us, tier), usage in sorted(self._usage.items()):
            price = self._prices.get(model)
            if price is None or not price.tiers:
                continue
            cost = usage.cost(self._prices, model, us_inference=us, tier=tier) or 0.0
            requests, usd = out.setdefault(model, {}).get(tier, (0, 0.0))
            out[model][tier] = (requests + usage.requests, usd + cost)
        return out

    @property
    def cost_usd(self) -> float:
        """Full-precision USD billed (batch prices) for every priced model; see
        :attr:`unpriced_models` for the rest."""
        return sum(c for c in self.cost_by_model().values() if c is not None)

    @property
    def standard_cost_usd(self) -> float:
        """What the same usage of the priced models costs at standard (non-batch) prices."""
        return sum(c for c in self.cost_by_model(batch=False).values() if c is not None)

    @property
    def saving_usd(self) -> float:
        return self.standard_cost_usd - self.cost_usd

    @property
    def unpriced_models(self) -> list[str]:
        return [m for m, c in self.cost_by_model().items() if c is None]

    @property
    def warnings(self) -> list[str]:
        """What a reader of the cost must know: models left out of it, and how to fix that."""
        unpriced = self.unpriced_models
        return [unpriced_warning(unpriced)] if unpriced else []

    @property
    def cache_hit_rate(self) -> float | None:
        read = uncached = written = 0
        for usage in self._usage.values():
            read += usage.cache_read_input_tokens
            uncached += usage.input_tokens
            written += usage.cache_write_tokens
        return _hit_rate(read, uncached, written)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary with a stable key order; costs rounded to 6 decimals.

        ``cost_usd`` is the billed cost (batch prices), ``standard_cost_usd`` the same usage
        at standard prices and ``saving_usd`` the difference, per model and in total; they
        cover priced models only. ``cost_complete`` is false when some succeeded lines came
        from models listed in ``unpriced_models`` (their usage is still in ``models``, with
        null costs), and ``cost_warnings`` then says how to price them.
        """
        costs = self.cost_by_model()
        standard = self.cost_by_model(batch=False)
        tiers = self.tiers_by_model()
        models: dict[str, Any] = {}
        for model, usage in self.usage_by_model.items():
            entry: dict[str, Any] = {key: getattr(usage, key) for key in _USAGE_KEYS}
            entry["cache_write_tokens"] = usage.cache_write_tokens
            entry["cache_hit_rate"] = round_or_none(usage.cache_hit_rate, _RATE_DECIMALS)
            price = self._prices.get(model)
            entry["priced_as"] = self._prices.resolve(model)
            entry["price_source"] = price.source if price else None
            entry["price_checked"] = price.checked.isoformat() if price and price.checked else None
            billed, full = costs[model], standard[model]
            entry["cost_usd"] = round_or_none(billed, _COST_DECIMALS)
            entry["standard_cost_usd"] = round_or_none(full, _COST_DECIMALS)
            entry["saving_usd"] = (
                None
                if billed is None or full is None
                else round_or_none(full - billed, _COST_DECIMALS)
            )
            if price is not None and model in tiers:
                entry["cost_by_tier"] = {
                    price.tier_label(t): {"requests": n, "cost_usd": round(usd, _COST_DECIMALS)}
                    for t, (n, usd) in sorted(tiers[model].items())
                }
            models[model] = entry
        unpriced = [m for m, c in costs.items() if c is None]
        billed_total, standard_total = self.cost_usd, self.standard_cost_usd
        return {
            "lines": self.lines,
            "counts": self.counts,
            "error_counts": self.error_counts,
            "models": models,
            "cost_usd": round(billed_total, _COST_DECIMALS),
            "standard_cost_usd": round(standard_total, _COST_DECIMALS),
            "saving_usd": round(standard_total - billed_total, _COST_DECIMALS),
            "cost_complete": not unpriced,
            "unpriced_models": unpriced,
            "cost_warnings": [unpriced_warning(unpriced)] if unpriced else [],
            "cache_hit_rate": round_or_none(self.cache_hit_rate, _RATE_DECIMALS),
        }

    def __repr__(self) -> str:
        return f"ResultTally(lines={self.lines}, counts={self.counts})"
