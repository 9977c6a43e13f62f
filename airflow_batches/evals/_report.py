"""``report.html``: one self-contained page a person reads after the nightly eval.

No script, no stylesheet or font fetched, no image file: CSS in a ``<style>`` element and the
charts as inline SVG (``_svg``), so the file opens the same from object storage, a mail or a
laptop offline. It shows, from the evaluation's summary (``summary.json``):

* the run and its gates (thresholds met or not);
* a table per model: requests, results by type, scored / passed, pass rate, mean score, cost,
  spend avoided by the cross-run cache, cost per correct answer, prompt-cache and cross-run
  cache hit rates, and the change against the baseline;
* charts of score, cost and cache hit rate per model, and of the pass rate over the last runs
  when the history is known;
* the requests that regressed (the first ones), the figures per category, and the batches,
  each linked to where it can be looked at (the Console, or the emulator's admin view).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from airflow_batches.evals._svg import bar_chart, line_chart

__all__ = ["render_report"]

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1180px;color:#1d2430;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.meta{color:#5a6475;margin:0 0 16px}
table{border-collapse:collapse;width:100%;margin:6px 0 12px;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #e2e6ee;padding:5px 8px;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}th{background:#f4f6fa;font-weight:600}
.up{color:#22803a}.down{color:#b3261e}.flat{color:#5a6475}
.gate{padding:8px 12px;border-radius:6px;margin:10px 0}
.gate.ok{background:#e8f5ec}.gate.bad{background:#fdecea}
.charts{display:flex;flex-wrap:wrap;gap:12px}
.chart{background:#fbfcfe;border:1px solid #e2e6ee;border-radius:6px;max-width:100%;height:auto}
.chart .grid{stroke:#e2e6ee}.chart .tick,.chart .label,.chart .legend,.chart .value{
font-size:11px;fill:#3d4656}.chart .chart-title{font-size:13px;font-weight:600;fill:#1d2430}
.chart .value{font-size:10px}code{background:#f4f6fa;padding:1px 4px;border-radius:3px}
"""


def _pct(value: Any) -> str:
    return "&ndash;" if value is None else f"{value * 100:.1f}%"


def _usd(value: Any) -> str:
    if value is None:
        return "&ndash;"
    return f"${value:.6f}" if abs(value) < 0.01 else f"${value:.4f}"


def _num(value: Any) -> str:
    if value is None:
        return "&ndash;"
    return f"{value:,}" if isinstance(value, int) else f"{value:.4f}"


def _delta(value: Any, *, percent: bool = True, lower_is_better: bool = False) -> str:
    if value is None:
        return '<span class="flat">&ndash;</span>'
    good = value < 0 if lower_is_better else value > 0
    kind = "flat" if abs(value) < 1e-12 else ("up" if good else "down")
    arrow = "▲" if value > 0 else ("▼" if value < 0 else "=")
    shown = f"{value * 100:+.1f} pt" if percent else f"{value:+.6f}"
    return f'<span class="{kind}">{arrow} {escape(shown)}</span>'


def _batch_models(batch: Mapping[str, Any]) -> str:
    labels = batch.get("models") or ([batch["model"]] if batch.get("model") else [])
    if len(labels) > 1:
        return "mixed: " + ", ".join(str(x) for x in labels)
    return str(labels[0]) if labels else ""


LINK_SCHEMES = frozenset({"http", "https", "file"})
"""The only links the report writes; any other address (``javascript:``, ``data:``, a
relative path) taken from a file is shown as text."""


def _link(url: object, text: str) -> str:
    if not isinstance(url, str) or not _linkable(url):
        return escape(text)
    return f'<a href="{escape(url, quote=True)}">{escape(text)}</a>'


def _linkable(url: str) -> bool:
    # Browsers drop ASCII tabs and newlines anywhere in a URL and trim spaces and controls
    # at its ends ("java\tscript:"): judge the scheme they would see, and refuse such URLs.
    if any(ord(c) < 0x21 or c == "\x7f" for c in url):
        return False
    scheme, sep, _ = url.partition(":")
    return bool(sep) and scheme.lower() in LINK_SCHEMES


def _row(label: str, cells: Sequence[str]) -> str:
    return (
        f'<tr data-model="{escape(label)}"><td>{escape(label)}</td>'
        + "".join(f"<td>{c}</td>" for c in cells)
        + "</tr>"
    )


def _table(table_id: str, heads: Sequence[str], rows: Sequence[str]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in heads)
    return f'<table id="{table_id}"><tr>{head}</tr>{"".join(rows)}</table>'


def _models_table(models: Mapping[str, Any], changes: Mapping[str, Any]) -> str:
    """Scores per model: what was answered, what was right, and the change."""
    rows = []
    for label, m in models.items():
        counts = m.get("counts") or {}
        change = changes.get(label) or {}
        rows.append(
            _row(
                label,
                [
                    _num(m.get("requests")),
                    _num(counts.get("succeeded", 0)),
                    _num(counts.get("errored", 0)),
                    _num(counts.get("expired", 0)),
                    _num(counts.get("canceled", 0)),
                    _num(m.get("scored")),
                    _num(m.get("passed")),
                    f'<span class="pass-rate">{_pct(m.get("pass_rate"))}</span>',
                    _delta(change.get("pass_rate")),
                    _num(m.get("mean_score")),
                    _delta(change.get("mean_score")),
                    _num(m.get("regressions")),
                ],
            )
        )
    heads = (
        "model",
        "requests",
        "succeeded",
        "errored",
        "expired",
        "canceled",
        "scored",
        "passed",
        "pass rate",
        "change",
        "mean score",
        "change",
        "regressed",
    )
    return _table("models", heads, rows)


def _costs_table(models: Mapping[str, Any], changes: Mapping[str, Any]) -> str:
    """Cost and caches per model."""
    rows = []
    for label, m in models.items():
        change = (changes.get(label) or {}).get("cost_per_correct_usd")
        rows.append(
            _row(
                label,
                [
                    f'<span class="cost">{_usd(m.get("cost_usd"))}</span>',
                    _usd(m.get("cost_avoided_usd")),
                    _usd(m.get("cost_per_correct_usd")),
                    _delta(change, percent=False, lower_is_better=True),
                    _pct(m.get("prompt_cache_hit_rate")),
                    f"{_num(m.get('cross_run_cache_hits'))} "
                    f"({_pct(m.get('cross_run_cache_hit_rate'))})",
                ],
            )
        )
    heads = (
        "model",
        "cost (billed)",
        "avoided by the cache",
        "cost per correct answer",
        "change",
        "prompt cache hit rate",
        "cross-run cache hits",
    )
    return _table("costs", heads, rows)


def _charts(summary: Mapping[str, Any]) -> str:
    models: Mapping[str, Any] = summary.get("models") or {}
    labels = list(models)
    baseline = (summary.get("baseline") or {}).get("models") or {}
    score_series: list[tuple[str, Sequence[float | None]]] = [
        ("pass rate", [models[m].get("pass_rate") for m in labels]),
        ("mean score", [models[m].get("mean_score") for m in labels]),
    ]
    if baseline:
        score_series.append(
            ("baseline pass rate", [(baseline.get(m) or {}).get("pass_rate") for m in labels])
        )
    charts = [
        bar_chart("chart-score", "Score per model", labels, score_series, unit="%"),
        bar_chart(
            "chart-cost",
            "Cost per model (batch prices)",
            labels,
            [
                ("billed", [models[m].get("cost_usd") for m in labels]),
                ("avoided by the cache", [models[m].get("cost_avoided_usd") for m in labels]),
            ],
            unit="$",
        ),
        bar_chart(
            "chart-cost-per-correct",
            "Cost per correct answer",
            labels,
            [("per correct answer", [models[m].get("cost_per_correct_usd") for m in labels])],
            unit="$",
        ),
        bar_chart(
            "chart-cache",
            "Cache hit rate per model",
            labels,
            [
                ("prompt cache", [models[m].get("prompt_cache_hit_rate") for m in labels]),
                ("cross-run cache", [models[m].get("cross_run_cache_hit_rate") for m in labels]),
            ],
            unit="%",
        ),
    ]
    runs = [*(summary.get("history") or ()), {"run_id": "this run", "models": models}]
    if len(runs) > 1:
        names = [str(r.get("run_id") or r.get("evaluated_at") or "?") for r in runs]
        series = [
            (m, [((r.get("models") or {}).get(m) or {}).get("pass_rate") for r in runs])
            for m in labels
        ]
        charts.append(line_chart("chart-history", "Pass rate over the last runs", names, series))
    return '<div class="charts">' + "".join(charts) + "</div>"


def _regressions(summary: Mapping[str, Any]) -> str:
    found = summary.get("regressions") or {}
    examples = found.get("examples") or []
    if not summary.get("baseline"):
        return "<p>No baseline: this is the first run compared (or none was found).</p>"
    if not examples:
        return '<p id="regressions">No request regressed against the baseline.</p>'
    rows = "".join(
        f"<tr><td>{escape(str(e['custom_id']))}</td><td>{escape(str(e['model']))}</td>"
        f"<td>{escape(str(e.get('category') or ''))}</td><td>{_num(e['before'])}</td>"
        f"<td>{_num(e['after'])}</td></tr>"
        for e in examples
    )
    more = found.get("count", 0) - len(examples)
    tail = f"<p>… and {more:,} more (<code>regressions.jsonl</code>).</p>" if more > 0 else ""
    return (
        '<table id="regressions"><tr><th>custom_id</th><th>model</th><th>category</th>'
        f"<th>score before</th><th>score now</th></tr>{rows}</table>{tail}"
    )


def _categories(models: Mapping[str, Any]) -> str:
    names = sorted({c for m in models.values() for c in m.get("categories") or {}})
    if not names:
        return ""
    head = "<tr><th>category</th>" + "".join(f"<th>{escape(m)}</th>" for m in models) + "</tr>"
    rows = []
    for name in names:
        cells = []
        for m in models.values():
            figures = (m.get("categories") or {}).get(name) or {}
            cells.append(
                f"<td>{_pct(figures.get('pass_rate'))} ({_num(figures.get('scored', 0))})</td>"
            )
        rows.append(f"<tr><td>{escape(name)}</td>{''.join(cells)}</tr>")
    return f'<h2>Pass rate per category</h2><table id="categories">{head}{"".join(rows)}</table>'


def render_report(summary: Mapping[str, Any]) -> str:
    """The HTML page of an evaluation summary (see the module docstring)."""
    run = summary.get("run") or {}
    models: Mapping[str, Any] = summary.get("models") or {}
    changes: Mapping[str, Any] = summary.get("deltas") or {}
    totals = summary.get("totals") or {}
    gate = summary.get("gate") or {}
    violations = gate.get("violations") or []
    if violations:
        verdict = (
            '<div class="gate bad" id="gate"><b>Thresholds not met</b><ul>'
            + "".join(f"<li>{escape(v)}</li>" for v in violations)
            + "</ul></div>"
        )
    elif gate.get("checked"):
        verdict = '<div class="gate ok" id="gate">Every threshold is met.</div>'
    else:
        verdict = ""
    baseline = summary.get("baseline") or {}
    shown = str(baseline.get("run_id") or baseline.get("source"))
    compared = (
        f"compared with {_link(baseline.get('report_url'), shown)}" if baseline else "no baseline"
    )
    batches = summary.get("batches") or []
    batch_items = "".join(
        f"<li>{_link(b.get('url'), str(b['id']))} ({escape(_batch_models(b))})</li>"
        for b in batches
    )
    title = f"Evaluation {run.get('dag_id', '')} {run.get('run_id', '')}".strip()
    files = " · ".join(_link(u, k) for k, u in (summary.get("files") or {}).items() if u)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{_STYLE}</style></head>
<body>
<h1>{escape(title)}</h1>
<p class="meta">Evaluated {escape(str(summary.get("evaluated_at", "")))} with
<code>{escape(str(summary.get("scorer", "")))}</code> · {int(summary.get("lines", 0)):,} result
line(s) · pass rate {_pct(totals.get("pass_rate"))} · cost {_usd(totals.get("cost_usd"))}
(avoided {_usd(totals.get("cost_avoided_usd"))}) · {compared}</p>
{verdict}
<h2>Scores per model</h2>
{_models_table(models, changes)}
<h2>Cost and caches per model</h2>
{_costs_table(models, changes)}
{_charts(summary)}
<h2>Regressions</h2>
{_regressions(summary)}
{_categories(models)}
<h2>Batches</h2>
<ul id="batches">{batch_items or "<li>none: every answer came from the cross-run cache</li>"}</ul>
<p class="meta">Files: {files}</p>
</body></html>
"""
