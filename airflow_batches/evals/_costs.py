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
    if not all(_well_formed(entry) for _, entry in entries):
        return None
    if digest != prices.digest():
        return None
    return {str(label): entry for label, entry in entries}


def _well_formed(entry: Any) -> bool:
    """Whether a manifest's matrix entry holds every cost figure, each of its type (a manifest
    read back from storage is checked before its figures stand for the lines')."""
    if not is_mapping(entry) or not all(k in entry for k in COST_FIGURES):
        return False
    rate = entry["cache_hit_rate"]
    return (
        all(_number(entry[k]) for k in ("cost_usd", "cost_avoided_usd"))
        and all(type(entry[k]) is bool for k in ("cost_complete", "cost_avoided_complete"))
        and (rate is None or _number(rate))
    )


def _number(value: Any) -> bool:
    return type(value) in (int, float) and value == value and value >= 0  # no NaN, no debt


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
