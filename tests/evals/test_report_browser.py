"""report.html in a real headless Chromium (Debian's, installed by scripts/browser.py when
missing): it renders, the charts are drawn, and the figures shown are the summary's."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from airflow_batches.api._pricing import load_price_table
from airflow_batches.evals import Baseline, EvalSettings, Thresholds, evaluate_job, exact_match
from airflow_batches.evals._svg import PALETTE
from scripts import browser
from tests.evals import lines as L
from tests.evals.pngs import colours

pytestmark = pytest.mark.slow

MODELS = ["claude-haiku-4-5", "claude-sonnet-4-5"]


class Dom(HTMLParser):
    """The elements a test looks for: every tag with its attributes, and the text of cells."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.stack: list[str] = []
        self.cells: dict[str, list[str]] = {}
        self._row: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.elements.append((tag, values))
        if tag == "tr" and "data-model" in values:
            self._row = values["data-model"]
            self.cells.setdefault(self._row, [])

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._row is not None and data.strip():
            self.cells[self._row].append(data.strip())

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [
            a for t, a in self.elements if t == tag and all(a.get(k) == v for k, v in attrs.items())
        ]


def run_eval(
    folder: Path, answers: dict[str, list[str]], baseline: Baseline | None
) -> dict[str, Any]:
    rows = []
    for label, texts in answers.items():
        for i, text in enumerate(texts):
            meta = {"expected": "yes", "category": "even" if i % 2 == 0 else "odd"}
            rows.append(L.succeeded(f"q{i}", text, model=label, label=label, metadata=meta))
        rows.append(L.errored("q-err", label=label, metadata={"expected": "yes"}))
    results = L.write(folder / "results.jsonl", rows)
    manifest = {
        "job_id": "j",
        "matrix": {m: {"batch_ids": [f"msgbatch_{m}"]} for m in answers},
        "batch_ids": [f"msgbatch_{m}" for m in answers],
    }
    return evaluate_job(
        manifest,
        EvalSettings(exact_match(), load_price_table(), thresholds=Thresholds(min_score=0.1)),
        output=folder,
        result_files=[results],
        baseline=baseline,
        run={"dag_id": "nightly", "run_id": folder.name},
        url_of_batch=lambda b: f"http://127.0.0.1:9/_emulator/batches/{b}",
    )


def test_the_report_renders_with_its_charts_and_figures(tmp_path: Path) -> None:
    first = run_eval(
        tmp_path / "night-1", {MODELS[0]: ["yes"] * 8, MODELS[1]: ["yes"] * 6 + ["no"] * 2}, None
    )
    second = run_eval(
        tmp_path / "night-2",
        {MODELS[0]: ["yes"] * 4 + ["no"] * 4, MODELS[1]: ["yes"] * 8},
        Baseline.load(tmp_path / "night-1"),
    )
    assert first["models"][MODELS[0]]["pass_rate"] == 1.0
    report = tmp_path / "night-2" / "report.html"
    html = report.read_text()
    assert "<script" not in html and "<link" not in html and 'src="' not in html

    dom = Dom()
    dom.feed(browser.dump_dom(report))
    charts = {a["id"] for a in dom.find("svg") if "id" in a}
    assert {"chart-score", "chart-cost", "chart-cache", "chart-history"} <= charts
    bars = [a for a in dom.find("rect") if a.get("class") == "bar"]
    score = {(b["data-category"], b["data-series"]): float(b["data-value"]) for b in bars}
    assert score[(MODELS[0], "pass rate")] == pytest.approx(0.5)
    assert score[(MODELS[1], "pass rate")] == pytest.approx(1.0)
    assert score[(MODELS[1], "baseline pass rate")] == pytest.approx(0.75)
    points = [a for a in dom.find("circle") if a.get("class") == "point"]
    assert len(points) == 4  # two models, two runs
    assert dom.cells[MODELS[0]][:8] == ["claude-haiku-4-5", "9", "8", "1", "0", "0", "8", "4"]
    assert "50.0%" in dom.cells[MODELS[0]] and "▼ -50.0 pt" in dom.cells[MODELS[0]]
    assert [a["href"] for a in dom.find("a") if "_emulator/batches" in a.get("href", "")] == [
        f"http://127.0.0.1:9/_emulator/batches/msgbatch_{m}" for m in MODELS
    ]
    assert second["regressions"]["count"] == 4
    assert dom.find("table", id="regressions") and dom.find("div", id="gate")

    shot = browser.screenshot(report, tmp_path / "report.png", window=(1100, 1500))
    painted = colours(shot)
    for colour in PALETTE[:3]:
        rgb = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
        assert painted[rgb] > 500, f"{colour} is hardly drawn: {painted[rgb]} pixels"
