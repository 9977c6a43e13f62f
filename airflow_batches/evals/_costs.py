"""What each model of an evaluation cost: billed this run, and avoided by the cross-run cache.

For a model-matrix job the fetch has counted it already, per model, in the manifest's
``matrix`` section; :func:`fetched_costs` takes those figures when they were priced with the
evaluation's own table (the manifest's ``prices_digest``), and a model's :class:`ModelCosts`
then stands on them without reading a line. Otherwise (a job of one model, an older manifest,
other ``prices=``) :class:`ModelCosts` counts the published lines itself, with the fetch's
scan and tally (``jobs.results``). Either way the figures are what the lines say.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_batches.api._pricing import PriceTable
from airflow_batches.evals._scorers import is_mapping
from airflow_batches.jobs.results import ResultTally, scan_result_line

__all__ = ["COST_FIGURES", "ModelCosts", "fetched_costs"]

COST_FIGURES = (
    "cost_usd",
    "cost_complete",
    "cache_hit_rate",
    "cost_avoided_usd",
    "cost_avoided_complete",
)
"""What a model's entry in a manifest's ``matrix`` section must carry for an evaluation to
take its costs from there."""


def fetched_costs(
    manifest: Mapping[str, Any], prices: PriceTable
) -> dict[str, Mapping[str, Any]] | None:
    """Each matrix model's cost figures as the fetch counted them, when they can stand for
    the evaluation's own: the manifest says they were priced with a table of ``prices``'s
    digest, and every model's entry has them all. Else None (the evaluation counts)."""
    matrix = manifest.get("matrix")
    digest = manifest.get("prices_digest")
    if not is_mapping(matrix) or not matrix or not isinstance(digest, str):
        return None
    entries = list(matrix.items())
    if not all(is_mapping(e) and all(k in e for k in COST_FIGURES) for _, e in entries):
        return None
    if digest != prices.digest():
        return None
    return {str(label): entry for label, entry in entries}


class ModelCosts:
    """One model's costs: the fetch's figures (``given``), else counted line by line."""

    __slots__ = ("avoided", "billed", "given")

    def __init__(self, prices: PriceTable, given: Mapping[str, Any] | None = None) -> None:
        self.given = given
        self.billed = ResultTally(prices)
        self.avoided = ResultTally(prices)

    @property
    def counting(self) -> bool:
        """Whether lines must be handed to :meth:`add` (no figures were given)."""
        return self.given is None

    def add(self, line: bytes, *, cached: bool) -> None:
        """Count a published line (of a known result type): billed, or avoided if ``cached``."""
        (self.avoided if cached else self.billed).add(scan_result_line(line))

    def merge(self, other: ModelCosts) -> None:
        """Take in the billed lines ``other`` counted (given figures cover every line of the
        model already: nothing to take in)."""
        self.billed.merge(other.billed)

    def figures(self) -> dict[str, Any]:
        """``cost_usd``, ``cost_avoided_usd``, ``cost_complete`` and ``prompt_cache_hit_rate``."""
        given = self.given
        if given is not None:
            return {
                "cost_usd": given["cost_usd"],
                "cost_avoided_usd": given["cost_avoided_usd"],
                "cost_complete": given["cost_complete"] and given["cost_avoided_complete"],
                "prompt_cache_hit_rate": given["cache_hit_rate"],
            }
        billed, avoided = self.billed.to_dict(), self.avoided.to_dict()
        return {
            "cost_usd": billed["cost_usd"],
            "cost_avoided_usd": avoided["cost_usd"],
            "cost_complete": billed["cost_complete"] and avoided["cost_complete"],
            "prompt_cache_hit_rate": billed["cache_hit_rate"],
        }
