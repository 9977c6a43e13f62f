"""EvaluateResultsOperator: score a fetched job, compare with the last run, write a report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from airflow_batches._compat import (
    AirflowException,
    AirflowFailException,
    AirflowSkipException,
    Asset,
    BaseOperator,
    ObjectStoragePath,
)
from airflow_batches.api._pricing import PriceTable
from airflow_batches.evals._builtin import resolve_scorer
from airflow_batches.evals._compare import MANIFEST_NAME, Baseline, Metric, Thresholds
from airflow_batches.evals._run import EvalSettings, evaluate_job
from airflow_batches.evals._scorers import Scorer
from airflow_batches.hooks.batches import MessageBatchesHook
from airflow_batches.jobs import child
from airflow_batches.operators._common import conf_get, price_table, storage_path
from airflow_batches.operators._lineage import EvaluateLineage
from airflow_batches.operators._links import EVAL_FILES_KEY, BatchesLink, EvalReportLink, batch_url
from airflow_batches.operators._output import fetch_output

if TYPE_CHECKING:
    from airflow_batches._compat import Context

OnThreshold = Literal["fail", "skip"]


class EvaluateResultsOperator(EvaluateLineage, BaseOperator):
    """Score every result of a fetched job, compare with the previous run, write a report.

    Reads the files ``FetchResultsOperator`` published (``results=fetch.output``: its
    manifest; or the results it returned in XCom; or the URI of a results folder), line by
    line in constant memory, and scores each succeeded result with ``scorer``. Errored,
    expired and canceled requests are counted apart, never as wrong answers. Writes beside
    the manifest (or to ``destination``): ``scores.jsonl`` (one line per request),
    ``summary.json`` (per model: pass rate, mean score, cost, cost per correct answer, cache
    hit rates, and the changes against the baseline), ``regressions.jsonl`` and
    ``report.html`` (self-contained, with charts). Returns the summary.

    Scoring is its own task rather than a ``scorer=`` on the fetch: results are fetched and
    paid for once, and can be scored again (a fixed scorer, a new rubric) without fetching
    again; a scorer that raises fails this task, not the fetch; and the thresholds gate the
    evaluation while the results stay published for whoever reads them.

    The baseline is ``baseline`` (a ``summary.json``, or the folder of an earlier run), else
    the summary named by the latest event of ``asset`` (this operator emits one on success,
    with the summary's and the report's paths and each model's figures in its extra): the
    last run that passed its thresholds.

    :param results: the fetch's output (templated), or a results folder / manifest URI.
    :param scorer: a callable ``(result, metadata) -> score`` (a bool, a number, a mapping
        with ``score``, or None for "not scored"), a built-in's name (``"exact_match"``,
        ``"contains"``, ``"regex"``, ``"json_schema"``, ``"numeric"``) or
        ``"package.module:function"``; see ``airflow_batches.evals``.
    :param destination: where to write (templated); default the manifest's folder.
    :param destination_conn_id: storage connection of the destination (and of the results
        when ``results_conn_id`` is not given).
    :param results_conn_id: storage connection of the results.
    :param baseline: an earlier run's ``summary.json`` or its folder (templated).
    :param baseline_conn_id: its storage connection.
    :param asset: the evaluation's Asset: emitted on success, and read for the baseline.
    :param min_score: each model's score must reach this (one value, or ``{label: value}``
        with ``"*"`` for the rest).
    :param max_regression: no model's score may fall by more than this against the baseline.
    :param metric: the score the thresholds look at: ``"mean_score"`` or ``"pass_rate"``.
    :param on_threshold: a threshold not met ``"fail"``\\ s the task (no retry) or
        ``"skip"``\\ s it; the files are written either way.
    :param pass_threshold: a numeric score passes at this or more.
    :param group_by: the metadata field whose values break the figures down.
    :param prices: price overrides or a price file (as the fetch's ``prices``).
    :param conn_id: the API connection whose batches the report links to.
    :param max_examples: regressed requests listed in the summary and the report.
    :param reuse_scores: take the baseline's score of an answer that is the same as then (same
        result, same metadata) under the same scorer and settings, instead of scoring it again
        (``airflow_batches.evals._reuse``): built-in scorers, and a scorer of your own that
        has a ``version`` attribute. False: score every line.
    """

    template_fields: Sequence[str] = ("results", "destination", "baseline")
    template_fields_renderers = {"results": "json"}
    operator_extra_links = (EvalReportLink(), BatchesLink())
    ui_color = "#efe4f5"

    def __init__(
        self,
        *,
        results: Any,
        scorer: Scorer | str,
        destination: str | ObjectStoragePath | None = None,
        destination_conn_id: str | None = None,
        results_conn_id: str | None = None,
        baseline: str | ObjectStoragePath | None = None,
        baseline_conn_id: str | None = None,
        asset: Asset | None = None,
        min_score: float | Mapping[str, float] | None = None,
        max_regression: float | Mapping[str, float] | None = None,
        metric: Metric = "mean_score",
        on_threshold: OnThreshold = "fail",
        pass_threshold: float = 1.0,
        group_by: str | None = "category",
        prices: Mapping[str, Mapping[str, Any]] | str | None = None,
        conn_id: str = MessageBatchesHook.default_conn_name,
        max_examples: int = 50,
        reuse_scores: bool = True,
        **kwargs: Any,
    ) -> None:
        if asset is not None:
            kwargs["inlets"] = [*(kwargs.get("inlets") or []), asset]
            kwargs["outlets"] = [*(kwargs.get("outlets") or []), asset]
        super().__init__(**kwargs)
        if on_threshold not in ("fail", "skip"):
            raise ValueError(f"on_threshold must be 'fail' or 'skip', got {on_threshold!r}")
        self.results = results
        self.scorer = resolve_scorer(scorer)
        self.destination = destination
        self.destination_conn_id = destination_conn_id
        self.results_conn_id = results_conn_id
        self.baseline = baseline
        self.baseline_conn_id = baseline_conn_id
        self.asset = asset
        self.thresholds = Thresholds(min_score, max_regression, metric)
        self.on_threshold: OnThreshold = on_threshold
        self.pass_threshold = pass_threshold
        self.group_by = group_by
        self.prices = prices
        self.conn_id = conn_id
        self.max_examples = max_examples
        self.reuse_scores = reuse_scores
        self.report_url = ""

    @cached_property
    def price_table(self) -> PriceTable:
        return price_table(self.prices)

    # -- inputs ----------------------------------------------------------------------------

    def _inputs(self) -> tuple[dict[str, Any], list[Any], list[Any] | None]:
        """The manifest, its result files, and results given inline (XCom) if any."""
        try:
            found = fetch_output(self.results, self.results_conn_id or self.destination_conn_id)
        except ValueError as exc:
            raise AirflowException(f"results: {exc}") from None
        return found.manifest, found.files, found.inline

    def _output(self, manifest: Mapping[str, Any]) -> Any:
        where = self.destination or manifest.get("destination")
        if not where:
            raise AirflowException(
                "nowhere to write the scores and the report: the results came back in XCom; "
                "give EvaluateResultsOperator a destination="
            )
        return storage_path(where, self.destination_conn_id)

    def _baseline(self, context: Context) -> Baseline | None:
        source: Any = self.baseline
        conn = self.baseline_conn_id
        if not source and self.asset is not None:
            source = self._from_asset(context)
            conn = conn or self.destination_conn_id
        if not source:
            return None
        path = storage_path(source, conn)
        assert path is not None
        found = Baseline.load(path)
        if found is None:
            self.log.warning("No evaluation summary at %s: nothing to compare with", path)
        return found

    def _from_asset(self, context: Context) -> str | None:
        """The summary named by the latest event of the asset, not from this very run."""
        run_id = context["run_id"]
        assert self.asset is not None
        try:
            events = list(context["inlet_events"][self.asset])
        except Exception as exc:  # the asset has no event yet, or the runner cannot say
            self.log.info("No earlier event of %s: no baseline (%s)", self.asset, exc)
            return None
        for event in reversed(events):
            extra = dict(getattr(event, "extra", None) or {})
            if extra.get("summary") and extra.get("run_id") != run_id:
                self.log.info(
                    "Baseline: %s (from the event of run %s)", extra["summary"], extra.get("run_id")
                )
                return str(extra["summary"])
        return None

    # -- execution -------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        manifest, files, inline = self._inputs()
        self.keep_for_lineage("manifest", manifest)
        output = self._output(manifest)
        baseline = self._baseline(context)
        hook = MessageBatchesHook(conn_id=self.conn_id)
        config = hook.config
        template = conf_get("console_batch_url")
        ti = context["ti"]
        summary = evaluate_job(
            manifest,
            EvalSettings(
                self.scorer,
                self.price_table,
                pass_threshold=self.pass_threshold,
                group_by=self.group_by,
                thresholds=self.thresholds,
                max_examples=self.max_examples,
                reuse_scores=self.reuse_scores,
            ),
            output=output,
            result_files=files,
            results=inline,
            baseline=baseline,
            run={"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id},
            url_of_batch=lambda b: batch_url(
                config.base_url, b, workspace_id=config.workspace_id, template=template
            ),
            manifest_path=child(output, MANIFEST_NAME) if files else None,
        )
        self.keep_for_lineage("summary", summary)
        self.report_url = summary["files"]["report"]
        # Where the files are, whatever the gate decides: the plugin serves the report and
        # reads the summary of a night that failed its thresholds (no return value then).
        ti.xcom_push(
            key=EVAL_FILES_KEY,
            value={"files": summary["files"], "conn_id": self.destination_conn_id},
        )
        self._log(summary)
        violations = summary["gate"]["violations"]
        if violations:
            message = "thresholds not met: " + "; ".join(violations)
            if self.on_threshold == "skip":
                raise AirflowSkipException(message)
            raise AirflowFailException(message)
        if self.asset is not None:
            context["outlet_events"][self.asset].extra = {
                "summary": summary["files"]["summary"],
                "report": summary["files"]["report"],
                "run_id": ti.run_id,
                "models": {
                    label: {k: m.get(k) for k in ("pass_rate", "mean_score", "cost_usd")}
                    for label, m in summary["models"].items()
                },
            }
        return summary

    def _log(self, summary: Mapping[str, Any]) -> None:
        changes = summary.get("deltas") or {}
        for label, m in summary["models"].items():
            change = (changes.get(label) or {}).get("pass_rate")
            self.log.info(
                "%s: pass rate %s (%s/%s scored; %s errored, %s expired, %s canceled), mean "
                "score %s, cost $%.6f (+$%.6f avoided by the cache), per correct answer %s%s",
                label,
                _pct(m["pass_rate"]),
                m["passed"],
                m["scored"],
                m["counts"].get("errored", 0),
                m["counts"].get("expired", 0),
                m["counts"].get("canceled", 0),
                "-" if m["mean_score"] is None else f"{m['mean_score']:.4f}",
                m["cost_usd"],
                m["cost_avoided_usd"],
                "-" if m["cost_per_correct_usd"] is None else f"${m['cost_per_correct_usd']:.6f}",
                "" if change is None else f"; {change * 100:+.1f} pt against the baseline",
            )
        if summary.get("regressions"):
            self.log.info(
                "%d request(s) regressed against the baseline", summary["regressions"]["count"]
            )
        self.log.info("Report: %s", summary["files"]["report"])


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"
