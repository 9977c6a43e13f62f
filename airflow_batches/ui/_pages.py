"""The pages: the jobs in flight, the evaluations over time, one run's jobs, and refusals.

What a row shows comes from ``_jobs.JobView`` and ``_evaluations.Evaluation`` only: ids,
models, counts, times and money, never a request, an answer or a connection's secret. The
helpers of ``_html`` return markup; every other text is escaped here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from airflow_batches.evals import line_chart
from airflow_batches.ui._evaluations import METRICS, Evaluation, Night, night_label
from airflow_batches.ui._html import DASH, duration, external_link, frame, percent, top_link, usd
from airflow_batches.ui._jobs import COUNT_STATES, JobView
from airflow_batches.ui._urls import (
    airflow_dag_url,
    airflow_task_url,
    page_url,
    report_url,
    run_url,
)

__all__ = ["evaluations_section", "home_page", "jobs_table", "problem_page", "run_page"]


def _run_link(root: str, dag_id: str, run_id: str) -> str:
    """The run's jobs on this page (what every task's "Batches" link opens)."""
    href = escape(run_url(root, dag_id, run_id))
    return f'<a class="run" href="{href}">{escape(run_id)}</a>'


def _where(job: JobView, root: str) -> str:
    r = job.record
    task = r.task_id if r.map_index < 0 else f"{r.task_id} [{r.map_index}]"
    task_href = airflow_task_url(root, r.dag_id, r.run_id, r.task_id, r.map_index)
    return (
        f'<td class="where">{top_link(airflow_dag_url(root, r.dag_id), r.dag_id, class_="dag")}'
        f"<br>{_run_link(root, r.dag_id, r.run_id)}<br>{top_link(task_href, task, class_='task')}"
        "</td>"
    )


def _batches(job: JobView) -> str:
    items = []
    for b in job.batches:
        model = f' <span class="model">{escape(b.model)}</span>' if b.model else ""
        status = escape(b.status.replace(" ", "_"))
        items.append(
            f'<li data-batch="{escape(b.id)}">{external_link(b.url, b.id)}{model} '
            f'<span class="status {status}">{escape(b.status)}</span></li>'
        )
    return f'<td><ul class="batches">{"".join(items)}</ul></td>'


def _counts(job: JobView) -> str:
    counts = job.counts
    spans = [
        f'<span class="{state}" data-state="{state}" data-count="{counts[state]}">'
        f"{state} {counts[state]:,}</span>"
        for state in COUNT_STATES
        if counts[state] or state == "processing"
    ]
    if job.unlisted:
        spans.append(f'<span class="muted unlisted">not listed {job.unlisted:,}</span>')
    if job.listing_error:
        error = escape(job.listing_error)
        spans.append(f'<span class="bad listing-error" title="{error}">unavailable</span>')
    total = f'<span class="muted">of {job.request_count:,}</span>'
    return f'<td class="counts">{"".join(spans)}<br>{total}</td>'


def _money(job: JobView) -> str:
    if job.cost_usd is not None:
        billed = '<span class="muted">billed</span>'
        return f'<td class="num cost">{usd(job.cost_usd)}<br>{billed}</td>'
    worst = f'<br><span class="muted">worst {usd(job.worst_usd)}</span>' if job.worst_usd else ""
    return f'<td class="num estimate">{usd(job.estimate_usd)}{worst}</td>'


def _expiry(job: JobView, now: datetime) -> str:
    left = job.expires_in(now)
    if left is not None:
        return duration(left)
    until = job.results_until()
    return f"ended; results until {until:%Y-%m-%d}" if until else "ended"


def jobs_table(
    jobs: Sequence[JobView], now: datetime, root: str, *, marked: str | None = None
) -> str:
    """One row per job: where, batches, counts, age, expiry, money."""
    rows = []
    for job in jobs:
        state = "fetched" if job.fetched else (job.fetch_state and f"fetch {job.fetch_state}")
        run_state = job.record.run_state
        ended = f"run {run_state}" if run_state not in (None, "running", "queued") else None
        notes = "; ".join(n for n in (*job.notes, state, ended) if n)
        css = ' class="marked"' if marked and job.job_id == marked else ""
        rows.append(
            f'<tr data-job="{escape(job.job_id)}" data-dag="{escape(job.record.dag_id)}"{css}>'
            f"{_where(job, root)}{_batches(job)}{_counts(job)}"
            f'<td class="num age">{duration(job.age(now))}</td>'
            f'<td class="num expiry">{_expiry(job, now)}</td>{_money(job)}'
            f'<td class="notes">{escape(notes)}</td></tr>'
        )
    if not rows:
        return '<p class="empty" id="no-jobs">No job in flight in the DAGs you can read.</p>'
    head = (
        "<tr><th>DAG / run / task</th><th>Batches (model, status)</th><th>Requests</th>"
        "<th>Age</th><th>Expires in</th><th>Estimate / cost</th><th>Notes</th></tr>"
    )
    return f'<table id="jobs">{head}{"".join(rows)}</table>'


def _gate(night: Night) -> str:
    if night.summary is None:
        gate = f'<span class="bad">{escape(night.problem or "no summary")}</span>'
    elif night.violations:
        why = escape("; ".join(night.violations))
        gate = f'<span class="bad gate" title="{why}">not met</span>'
    else:
        gate = '<span class="ok gate">met</span>'
    return gate + (' <span class="muted">(baseline)</span>' if night.emitted else "")


def _night_row(night: Night, models: Sequence[str], root: str) -> str:
    r = night.record
    report = escape(report_url(root, r.dag_id, r.run_id, r.task_id, r.map_index))
    cells = []
    for model in models:
        figures = night.models.get(model) or {}
        cost = f'<span class="muted">{usd(figures.get("cost_usd"))}</span>'
        cells.append(
            f'<td class="num" data-model="{escape(model)}">'
            f"{percent(figures.get('pass_rate'))}<br>{cost}</td>"
        )
    count = night.regressions
    if night.summary is None:
        regressed, link = DASH, DASH
    else:
        link = f'<a class="report" href="{report}" target="_top">report</a>'
        regressed = (
            '<span class="muted">no baseline</span>'
            if count is None
            else f'<a class="regressions" href="{report}#regressions" target="_top">'
            f"{count:,} regressed</a>"
        )
    return (
        f'<tr data-run="{escape(r.run_id)}"><td>{escape(night_label(night))}</td>'
        f"<td>{_run_link(root, r.dag_id, r.run_id)}</td><td>{_gate(night)}</td>"
        f'{"".join(cells)}<td class="num">{regressed}</td><td>{link}</td></tr>'
    )


def evaluations_section(evaluations: Sequence[Evaluation], root: str) -> str:
    """Per evaluation: charts of each model's figures night by night, and the nights (the
    newest first), each with its regressions and report a click away."""
    if not evaluations:
        return '<p class="empty" id="no-evaluations">No evaluation in the DAGs you can read.</p>'
    parts = []
    for n, ev in enumerate(evaluations):
        labels = [night_label(night) for night in ev.nights]
        charts = "".join(
            line_chart(f"chart-{n}-{key}", f"{title} per model", labels, ev.series(key), unit=unit)
            for key, title, unit in METRICS
        )
        head = (
            "<tr><th>Night</th><th>Run</th><th>Thresholds</th>"
            + "".join(f"<th>{escape(m)}<br><small>pass rate, cost</small></th>" for m in ev.models)
            + "<th>Regressions</th><th>Report</th></tr>"
        )
        rows = "".join(_night_row(night, ev.models, root) for night in reversed(ev.nights))
        name = ev.task_id if ev.map_index < 0 else f"{ev.task_id} [{ev.map_index}]"
        parts.append(
            f'<article class="evaluation" data-dag="{escape(ev.dag_id)}" '
            f'data-task="{escape(ev.task_id)}"><h3>{escape(ev.dag_id)} · {escape(name)}</h3>'
            f'<div class="charts">{charts}</div><table class="nights">{head}{rows}</table>'
            "</article>"
        )
    return "".join(parts)


def home_page(
    user: str,
    jobs: Sequence[JobView],
    evaluations: Sequence[Evaluation],
    now: datetime,
    root: str,
    *,
    dag_id: str | None = None,
) -> str:
    batches = sum(len(j.batches) for j in jobs)
    requests = sum(j.request_count for j in jobs)
    narrowed = ""
    if dag_id:
        every = f'<a href="{escape(page_url(root))}">every DAG</a>'
        narrowed = f'<p class="meta">DAG {escape(dag_id)} only · {every}</p>'
    summary = f"{len(jobs):,} job(s), {batches:,} batch(es), {requests:,} request(s)"
    body = (
        f'{narrowed}<h2 id="in-flight">In flight <small class="muted">{summary}</small></h2>'
        f"{jobs_table(jobs, now, root)}"
        f'<h2 id="evaluations">Evaluations over time</h2>{evaluations_section(evaluations, root)}'
    )
    return frame("Message Batches", user, body)


def _pass_rates(night: Night) -> str:
    rates = [
        f"{escape(model)} {percent(figures.get('pass_rate'))}"
        for model, figures in night.models.items()
    ]
    return ", ".join(rates) or "no figures"


def run_page(
    user: str,
    dag_id: str,
    run_id: str,
    jobs: Sequence[JobView],
    evaluations: Sequence[Evaluation],
    now: datetime,
    root: str,
    *,
    marked: str | None = None,
) -> str:
    """Every job of one run, fetched or not, and the run's evaluation reports."""
    reports = []
    for night in (n for ev in evaluations for n in ev.nights if n.summary is not None):
        r = night.record
        href = escape(report_url(root, dag_id, run_id, r.task_id, r.map_index))
        link = f'<a class="report" href="{href}" target="_top">report</a>'
        reports.append(f"<li>{escape(r.task_id)}: {_pass_rates(night)} · {link}</li>")
    every = f'<a href="{escape(page_url(root))}">every job in flight</a>'
    body = (
        f'<p class="meta">{top_link(airflow_dag_url(root, dag_id), dag_id)} · {every}</p>'
        f'<h2 id="jobs-of-run">Jobs of this run</h2>{jobs_table(jobs, now, root, marked=marked)}'
    )
    if reports:
        body += f'<h2 id="evaluations">Evaluations</h2><ul id="reports">{"".join(reports)}</ul>'
    return frame(f"Message Batches · {dag_id} · {run_id}", user, body, heading=f"Run {run_id}")


def problem_page(status: int, message: str, root: str) -> str:
    """Why there is nothing to show (not signed in, not found), and the way back."""
    body = (
        f'<p class="notice" id="problem" data-status="{status}">{escape(message)}</p>'
        f'<p><a href="{escape(root)}" target="_top">Airflow</a></p>'
    )
    return frame("Message Batches", "", body)
