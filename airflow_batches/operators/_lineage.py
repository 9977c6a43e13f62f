"""OpenLineage for the operators, the way Airflow's own providers report it.

The openlineage provider's listener calls ``get_openlineage_facets_on_start`` when a task
starts, and ``..._on_complete`` / ``..._on_failure`` when it ends; each returns an
``OperatorLineage`` (input and output datasets, run facets). The mixins below answer from
what the task has seen so far (``keep_for_lineage``): at start what it was given, at the end
what it made, or on failure what it had made by then. What each operator reports is decided
in ``_lineage_facts``, as plain data; this module only turns it into OpenLineage objects.

OpenLineage is imported only inside these methods: without the openlineage provider nothing
here is imported (the listener that calls them is the provider's), and called anyway they
return None. docs/lineage.md lists the datasets and the facet's fields.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_batches._version import __version__
from airflow_batches.operators._lineage_facts import (
    FACET_KEY,
    Lineage,
    evaluate_lineage,
    fetch_lineage,
    submit_lineage,
)

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

__all__ = ["EvaluateLineage", "FetchLineage", "SubmitLineage", "job_facet_class"]

SCHEMA_FILE = Path(__file__).with_name("lineage_facet.json")
"""The facet's JSON Schema, shipped in the package; its ``$id`` is the URN below."""
SCHEMA_URL = "urn:airflow-batches:openlineage-facets:1#/$defs/AirflowBatchesJobRunFacet"
"""Names the facet's schema and its version (the package has no public address to serve
it from yet; the file is ``SCHEMA_FILE``)."""
PRODUCER = f"urn:airflow-batches:{__version__}"
"""Who made the facet: this package, at this version."""

T = TypeVar("T")


class _LineageMixin:
    """The three methods the openlineage provider looks for, over ``_lineage()``."""

    def keep_for_lineage(self, key: str, value: T) -> T:
        """Remember what the task learned (its job, manifest or summary) for the events at
        its end; returns ``value``."""
        self.__dict__.setdefault("_lineage_seen", {})[key] = value
        return value

    def _seen(self, key: str) -> Any:
        return self.__dict__.get("_lineage_seen", {}).get(key)

    def _lineage(self) -> Lineage:
        raise NotImplementedError

    def get_openlineage_facets_on_start(self) -> OperatorLineage[Any, Any] | None:
        return operator_lineage(self._lineage())

    def get_openlineage_facets_on_complete(
        self, task_instance: Any
    ) -> OperatorLineage[Any, Any] | None:
        return operator_lineage(self._lineage())

    def get_openlineage_facets_on_failure(
        self, task_instance: Any
    ) -> OperatorLineage[Any, Any] | None:
        return operator_lineage(self._lineage())


class SubmitLineage(_LineageMixin):
    """The requests file in; the staged job out."""

    requests_path: Any
    models: Any

    def _lineage(self) -> Lineage:
        return submit_lineage(
            requests_path=self.requests_path, models=self.models, job=self._seen("job")
        )


class FetchLineage(_LineageMixin):
    """The staged job in; the results files out."""

    job: Any

    def _lineage(self) -> Lineage:
        return fetch_lineage(job=self.job, manifest=self._seen("manifest"))


class EvaluateLineage(_LineageMixin):
    """The results files in; scores, summary, regressions and report out."""

    results: Any

    def _lineage(self) -> Lineage:
        return evaluate_lineage(
            results=self.results, manifest=self._seen("manifest"), summary=self._seen("summary")
        )


def operator_lineage(lineage: Lineage) -> OperatorLineage[Any, Any] | None:
    """``lineage`` as the provider's ``OperatorLineage``; None without the provider."""
    try:
        from airflow.providers.openlineage.extractors import OperatorLineage
    except ImportError:
        return None
    from airflow.providers.common.compat.openlineage.facet import Dataset

    inputs, outputs = lineage.datasets()
    facets = {}
    if lineage.job is not None:
        facets[FACET_KEY] = job_facet_class()(producer=PRODUCER, **lineage.job)
    return OperatorLineage(
        inputs=[Dataset(namespace=ns, name=name) for ns, name in inputs],
        outputs=[Dataset(namespace=ns, name=name) for ns, name in outputs],
        run_facets=facets,
    )


@cache
def job_facet_class() -> type[Any]:
    """The run facet's class, made on first use: it subclasses OpenLineage's ``RunFacet``,
    which exists only where the openlineage client is installed."""
    from typing import Any as _Any

    from airflow.providers.common.compat.openlineage.facet import RunFacet
    from attrs import define

    @define(kw_only=True)
    class AirflowBatchesJobRunFacet(RunFacet):  # type: ignore[misc,unused-ignore]
        """A job of the Message Batches API as one task saw it (``lineage_facet.json``);
        what the task does not know is None, and left out of the event."""

        stage: str
        jobId: str | None = None
        apiVersion: str | None = None
        batchIds: list[str] | None = None
        models: list[dict[str, _Any]] | None = None
        requestCounts: dict[str, int] | None = None
        usage: dict[str, int] | None = None
        costUsd: float | None = None
        costComplete: bool | None = None
        estimatedCostUsd: float | None = None
        worstCaseCostUsd: float | None = None
        costAvoidedUsd: float | None = None
        evaluation: dict[str, _Any] | None = None

        @staticmethod
        def _get_schema() -> str:
            return SCHEMA_URL

    return AirflowBatchesJobRunFacet
