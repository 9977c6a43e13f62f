"""Evaluations over time: each evaluate task's nights, from the summaries it wrote.

A night's figures are its summary: the evaluate task's return value (XCom) when it passed
its thresholds, else the ``summary.json`` it wrote before failing or skipping (named by the
files XCom it leaves whatever the gate decides; read from its storage once, then kept).
The nights that emitted the evaluation's Asset event (the next night's baseline) are marked.
Figures only: a summary holds per-model rates, scores and costs, and the regressed requests'
custom_ids, never a prompt or an answer.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from airflow_batches.operators._common import storage_path
from airflow_batches.ui._records import EVAL_FILES_KEY, RETURN_VALUE, TaskRecord

__all__ = [
    "MAX_SUMMARY_BYTES",
    "METRICS",
    "Evaluation",
    "Night",
    "SummaryReader",
    "evaluation_json",
    "evaluations",
    "night_label",
]

METRICS = (
    ("pass_rate", "Pass rate", "%"),
    ("mean_score", "Mean score", "%"),
    ("cost_usd", "Cost (batch prices)", "$"),
    ("cost_per_correct_usd", "Cost per correct answer", "$"),
)
"""The figures charted per model: summary key, title, unit."""

MAX_SUMMARY_BYTES = 16 * 1024 * 1024
"""The largest ``summary.json`` read (a summary is kilobytes: per model figures and at most
``max_examples`` regressed requests)."""


@dataclass(frozen=True)
class Night:
    """One run of an evaluation."""

    record: TaskRecord
    summary: Mapping[str, Any] | None
    problem: str | None = None
    """Why there is no summary (the task failed before writing one, or it cannot be read)."""
    emitted: bool = False
    """The run emitted the evaluation's Asset event: it passed, and is a baseline."""

    @property
    def models(self) -> Mapping[str, Any]:
        return (self.summary or {}).get("models") or {}

    @property
    def violations(self) -> list[str]:
        return list(((self.summary or {}).get("gate") or {}).get("violations") or [])

    @property
    def regressions(self) -> int | None:
        """Requests that regressed against the baseline; None without a baseline."""
        if not (self.summary or {}).get("baseline"):
            return None
        return int(((self.summary or {}).get("regressions") or {}).get("count") or 0)

    @property
    def baseline_run(self) -> str | None:
        return ((self.summary or {}).get("baseline") or {}).get("run_id")


@dataclass
class Evaluation:
    """The nights of one evaluate task (DAG and task), oldest first."""

    dag_id: str
    task_id: str
    map_index: int
    nights: list[Night] = field(default_factory=list)

    @property
    def models(self) -> list[str]:
        """Every model evaluated, in the order they first appear."""
        seen: dict[str, None] = {}
        for night in self.nights:
            seen.update(dict.fromkeys(night.models))
        return list(seen)

    def series(self, metric: str) -> list[tuple[str, list[float | None]]]:
        """Per model, ``metric`` night by night (None where the night has no figure)."""
        return [
            (model, [_figure((n.models.get(model) or {}).get(metric)) for n in self.nights])
            for model in self.models
        ]


def _figure(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class SummaryReader:
    """Reads the ``summary.json`` of a night that left no return value, once per task try
    (a summary does not change once written; the newest ``size`` are kept)."""

    def __init__(
        self, read: Callable[[str, str | None], bytes] | None = None, *, size: int = 2048
    ) -> None:
        self._read = read or _read_storage
        self._kept: OrderedDict[tuple[Any, ...], tuple[Mapping[str, Any] | None, str | None]]
        self._kept = OrderedDict()
        self._lock = threading.Lock()
        self.size = size
        self.reads = 0

    def __call__(self, record: TaskRecord) -> tuple[Mapping[str, Any] | None, str | None]:
        key = (record.dag_id, record.run_id, record.task_id, record.map_index, record.try_number)
        with self._lock:
            if key in self._kept:
                self._kept.move_to_end(key)
                return self._kept[key]
        found = self._load(record)
        with self._lock:
            self._kept[key] = found
            while len(self._kept) > self.size:
                self._kept.popitem(last=False)
        return found

    def _load(self, record: TaskRecord) -> tuple[Mapping[str, Any] | None, str | None]:
        written = record.values.get(EVAL_FILES_KEY)
        if not isinstance(written, Mapping):
            written = {}
        files = written.get("files")
        uri = (files or {}).get("summary") if isinstance(files, Mapping) else None
        if not isinstance(uri, str) or not uri:
            return None, f"no summary: the task ended {record.state or 'without a state'}"
        self.reads += 1
        try:
            data = msgspec.json.decode(self._read(uri, written.get("conn_id")))
        except Exception as exc:  # the page shows the night, and why it has no figures
            return None, f"cannot read {uri}: {type(exc).__name__}: {exc}"
        if not isinstance(data, dict):
            return None, f"{uri} is not a summary"
        return data, None


def _read_storage(uri: str, conn_id: str | None) -> bytes:
    path = storage_path(uri, conn_id)
    assert path is not None
    with path.open("rb") as stream:  # type: ignore[no-untyped-call]
        data: bytes = stream.read(MAX_SUMMARY_BYTES + 1)
    if len(data) > MAX_SUMMARY_BYTES:
        raise ValueError(f"over {MAX_SUMMARY_BYTES:,} bytes (MAX_SUMMARY_BYTES)")
    return data


def evaluations(
    records: Iterable[TaskRecord],
    *,
    emitted: set[tuple[str, str, str]],
    read_summary: Callable[[TaskRecord], tuple[Mapping[str, Any] | None, str | None]],
    nights: int,
) -> list[Evaluation]:
    """The evaluations among ``records`` (any order), each with its last ``nights`` nights."""
    grouped: dict[tuple[str, str, int], list[TaskRecord]] = {}
    for record in records:
        grouped.setdefault((record.dag_id, record.task_id, record.map_index), []).append(record)
    found = []
    for (dag_id, task_id, map_index), runs in sorted(grouped.items()):
        runs.sort(key=lambda r: (r.run_after is None, r.run_after, r.run_id))
        evaluation = Evaluation(dag_id, task_id, map_index)
        for record in runs[-nights:]:
            summary = record.values.get(RETURN_VALUE)
            problem = None
            if not isinstance(summary, Mapping) or "models" not in summary:
                summary, problem = read_summary(record)
            evaluation.nights.append(
                Night(
                    record,
                    summary,
                    problem,
                    emitted=(dag_id, task_id, record.run_id) in emitted,
                )
            )
        found.append(evaluation)
    return found


def night_label(night: Night) -> str:
    """How a night is named on a chart's axis: its run's date and time (UTC)."""
    when = night.record.run_after
    return when.strftime("%m-%d %H:%M") if when else night.record.run_id


def evaluation_json(evaluation: Evaluation) -> dict[str, Any]:
    """An evaluation as the JSON endpoint gives it: per night, each model's figures."""
    keys = [key for key, _, _ in METRICS]
    return {
        "dag_id": evaluation.dag_id,
        "task_id": evaluation.task_id,
        "map_index": evaluation.map_index,
        "models": evaluation.models,
        "nights": [
            {
                "run_id": n.record.run_id,
                "run_after": n.record.run_after.isoformat() if n.record.run_after else None,
                "state": n.record.state,
                "problem": n.problem,
                "baseline_run_id": n.baseline_run,
                "emitted_asset_event": n.emitted,
                "violations": n.violations,
                "regressions": n.regressions,
                "models": {
                    model: {k: _figure(figures.get(k)) for k in keys}
                    for model, figures in n.models.items()
                    if isinstance(figures, Mapping)
                },
            }
            for n in evaluation.nights
        ],
    }
