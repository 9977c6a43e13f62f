"""The plugin's parts on their own: its registration, the addresses and links, which batch is
which model, the cached listing, the summaries read once, the report's location, the HTML."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from airflow_batches.api import MessageBatch
from airflow_batches.jobs import BatchInfo, JobDescriptor
from airflow_batches.ui._evaluations import MAX_SUMMARY_BYTES, SummaryReader
from airflow_batches.ui._html import duration, external_link, top_link
from airflow_batches.ui._jobs import batch_models, fetched_jobs
from airflow_batches.ui._listing import Listed, ListingCache
from airflow_batches.ui._records import EVAL_FILES_KEY, RETURN_VALUE, TaskRecord
from airflow_batches.ui._report import ReportMissing, report_location
from airflow_batches.ui._urls import airflow_task_url, report_url, root_path, run_url

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def test_the_package_declares_the_plugin_and_airflow_loads_it() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    assert declared["airflow.plugins"] == {
        "message_batches": "airflow_batches.ui.plugin:MessageBatchesPlugin"
    }
    # Airflow's own plugins manager, in a process of its own, finds it through the entry point
    # (the package installed, nothing in a plugins folder), and loads none of the page.
    probe = """
import json, sys
from airflow import plugins_manager as pm
if hasattr(pm, "get_fastapi_plugins"):  # 3.2 and later
    apps, views = pm.get_fastapi_plugins()[0], pm._get_ui_plugins()[0]
    errors = pm.get_import_errors()
else:  # 3.1
    pm.initialize_fastapi_plugins(); pm.initialize_ui_plugins()
    apps, views, errors = pm.fastapi_apps, pm.external_views, pm.import_errors
apps = [dict(a, app=type(a["app"]).__name__) for a in apps]
print(json.dumps({"apps": apps, "views": views, "errors": errors,
    "page_loaded": "airflow_batches.ui._app" in sys.modules}))
"""
    env = {**os.environ, "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "no-plugins-here")}
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["apps"] == [
        {"app": "_LazyApp", "url_prefix": "/message-batches", "name": "Message Batches"}
    ]
    assert found["views"] == [
        {
            "name": "Message Batches",
            "href": "message-batches/",
            "url_route": "message-batches",
            "destination": "nav",
        }
    ]
    # With `[core] lazy_discover_providers = False` Airflow also loads the plugin the provider
    # info lists, as for its own providers, and notes the second registration (docs/ui.md);
    # nothing else may fail.
    twice = "Plugin 'message_batches' already registered, skipping"
    assert {k: v for k, v in found["errors"].items() if v != twice} == {}
    assert found["page_loaded"] is False


def test_the_app_is_built_on_its_first_request_and_asks_who_is_there() -> None:
    from airflow_batches.ui.plugin import MessageBatchesPlugin

    (entry,) = MessageBatchesPlugin.fastapi_apps
    transport = httpx.ASGITransport(app=entry["app"])

    async def ask(path: str) -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://af") as client:
            return await client.get(path)

    import asyncio

    for path, kind in (("/", "text/html"), ("/api/jobs", "application/json")):
        answer = asyncio.run(ask(path))
        assert answer.status_code == 401, path  # Airflow's get_user: no token, no page
        assert answer.headers["content-type"].startswith(kind)
    assert "Sign in to Airflow" in asyncio.run(ask("/")).text


def test_addresses_keep_airflows_prefix_and_quote_what_they_carry() -> None:
    assert root_path(None) == root_path("") == root_path("http://h:8080") == "/"
    assert root_path("https://h/airflow") == root_path("https://h/airflow/") == "/airflow/"
    run_id = "manual__2026-12-01T00:00:00+00:00"
    assert run_url("/af/", "d", run_id, job="j1") == (
        "/af/message-batches/run?dag_id=d&run_id=manual__2026-12-01T00%3A00%3A00%2B00%3A00&job=j1"
    )
    assert report_url("/", "d", "r", "evaluate", 3) == (
        "/message-batches/report?dag_id=d&run_id=r&task_id=evaluate&map_index=3"
    )
    assert report_url("/", "d", "r", "evaluate") == (
        "/message-batches/report?dag_id=d&run_id=r&task_id=evaluate"
    )
    assert airflow_task_url("/", "a/b", "r 1", "t", 2) == "/dags/a%2Fb/runs/r%201/tasks/t/mapped/2"


def test_the_links_open_the_plugins_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_batches.operators._links import (
        BatchesLink,
        EvalReportLink,
        FetchBatchesLink,
        SubmitBatchesLink,
    )

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example/prefix/")
    ti = SimpleNamespace(dag_id="d", run_id="r", task_id="evaluate", map_index=-1)
    evaluation = SimpleNamespace(report_url="s3://bucket/evals/report.html")
    assert EvalReportLink().get_link(evaluation, ti_key=ti) == (
        "/prefix/message-batches/report?dag_id=d&run_id=r&task_id=evaluate"
    )
    assert EvalReportLink().get_link(SimpleNamespace(report_url=""), ti_key=ti) == ""
    assert BatchesLink().get_link(evaluation, ti_key=ti) == (
        "/prefix/message-batches/run?dag_id=d&run_id=r"
    )
    fetch = SimpleNamespace(job=descriptor().model_dump(mode="json"))
    assert FetchBatchesLink().get_link(fetch, ti_key=ti).endswith("&job=0123456789abcdef")
    assert (
        FetchBatchesLink()
        .get_link(SimpleNamespace(job="msgbatch_1"), ti_key=ti)
        .endswith("run_id=r")
    )
    # Each operator's link leaves an XCom key of its own: how the page finds the tasks.
    keys = {SubmitBatchesLink().xcom_key, FetchBatchesLink().xcom_key, BatchesLink().xcom_key}
    assert len(keys) == 3


def descriptor(
    sizes: list[int] | None = None,
    matrix: list[str] | None = None,
    estimate: dict[str, int] | None = None,
) -> JobDescriptor:
    sizes = sizes or [5]
    firsts = [sum(sizes[:i]) for i in range(len(sizes))]
    return JobDescriptor(
        job_id="0123456789abcdef",
        fingerprint="0123456789abcdef" * 4,
        conn_id="c",
        job_dir="",
        request_count=sum(sizes),
        anthropic_version="2023-06-01",
        batches=[
            BatchInfo(id=f"msgbatch_{i}", request_count=n, first=f)
            for i, (n, f) in enumerate(zip(sizes, firsts, strict=True))
        ],
        submitted_at=T0,
        estimate={"models": {m: {"requests": n} for m, n in (estimate or {}).items()}},
        matrix=[{"model": m, "label": m} for m in matrix] if matrix else None,
    )


def test_each_batch_is_named_by_its_model_when_the_descriptor_tells() -> None:
    # A matrix of two models, 6 requests each, the first model's in two batches.
    job = descriptor([4, 2, 6], ["m-a", "m-b"], {"m-a": 6, "m-b": 6})
    assert batch_models(job) == {"msgbatch_0": "m-a", "msgbatch_1": "m-a", "msgbatch_2": "m-b"}
    assert batch_models(descriptor([3, 3], None, {"only": 6})) == {
        "msgbatch_0": "only",
        "msgbatch_1": "only",
    }
    # A cache answered some (the parts no longer add up), or models mixed in one batch: the
    # page names the job's models together rather than guess.
    assert batch_models(descriptor([4, 5], ["m-a", "m-b"], {"m-a": 6, "m-b": 6})) == {}
    assert batch_models(descriptor([6], None, {"m-a": 3, "m-b": 3})) == {}


def record(state: str, mark: Any = None, **values: Any) -> TaskRecord:
    return TaskRecord(
        dag_id="d",
        run_id="r",
        task_id="t",
        map_index=-1,
        state=state,
        try_number=1,
        run_state="running",
        run_after=T0,
        ended_at=None,
        mark=mark,
        values=values,
    )


def test_a_fetch_that_succeeded_wins_over_one_that_failed() -> None:
    link = "/message-batches/run?dag_id=d&run_id=r&job=j1"
    found = fetched_jobs([record("success", link), record("failed", link), record("success")])
    assert list(found) == [("d", "r", "j1")] and found[("d", "r", "j1")].state == "success"


def batch(batch_id: str, created: datetime) -> MessageBatch:
    return MessageBatch.model_validate(
        {
            "id": batch_id,
            "processing_status": "in_progress",
            "request_counts": {"processing": 2},
            "created_at": created.isoformat(),
            "expires_at": (created + timedelta(days=1)).isoformat(),
        }
    )


class Lister:
    def __init__(self, batches: list[MessageBatch], error: Exception | None = None) -> None:
        self.batches = batches
        self.error = error
        self.read = 0

    @contextmanager
    def __call__(self, conn_id: str) -> Iterator[Listed]:
        def listed() -> Iterator[MessageBatch]:
            for b in self.batches:
                self.read += 1
                yield b
            if self.error:
                raise self.error

        yield Listed(listed(), "http://emulator/_emulator/batches/{batch_id}")


def test_the_listing_is_read_once_per_connection_while_fresh() -> None:
    now = [0.0]
    newest_first = [batch(f"msgbatch_{i}", T0 - timedelta(hours=i)) for i in range(30)]
    lister = Lister(newest_first)
    cache = ListingCache(lister, ttl=30, max_pages=1, clock=lambda: now[0])
    first = cache.get("c", oldest=T0 - timedelta(hours=3))
    # Listed down to the oldest batch asked about, not the whole workspace.
    assert list(first.batches) == [f"msgbatch_{i}" for i in range(5)]
    assert first.page_of("msgbatch_1") == "http://emulator/_emulator/batches/msgbatch_1"
    for _ in range(50):
        assert cache.get("c", oldest=T0 - timedelta(hours=2)) is first
    assert cache.reads == 1
    # An older batch asked about: read further; then stale: read again.
    assert "msgbatch_9" in cache.get("c", oldest=T0 - timedelta(hours=9)).batches
    now[0] = 31.0
    cache.get("c", oldest=T0 - timedelta(hours=2))
    assert cache.reads == 3


def test_a_listing_that_fails_is_reported_without_stopping_the_page() -> None:
    key = "sk-ant-secret-key"
    cache = ListingCache(Lister([batch("msgbatch_0", T0)], error=OSError("connection reset")))
    found = cache.get("c")
    assert found.batches == {} and found.error is not None
    assert "OSError: connection reset" in found.error and key not in found.error
    assert found.page_of("msgbatch_0") == "http://emulator/_emulator/batches/msgbatch_0"


def test_a_summary_is_read_once_per_try_and_within_its_bound(tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"models": {"m": {"pass_rate": 0.5}}}))
    reads: list[str] = []

    def read(uri: str, conn_id: str | None) -> bytes:
        reads.append(uri)
        return Path(uri.removeprefix("file://")).read_bytes()

    reader = SummaryReader(read)
    night = record("failed", **{EVAL_FILES_KEY: {"files": {"summary": f"file://{summary}"}}})
    for _ in range(3):
        found, problem = reader(night)
        assert problem is None and found == {"models": {"m": {"pass_rate": 0.5}}}
    assert len(reads) == 1
    found, problem = reader(dataclasses.replace(record("failed"), run_id="r2"))
    assert found is None and problem == "no summary: the task ended failed"

    big = tmp_path / "big" / "summary.json"
    big.parent.mkdir()
    big.write_bytes(b" " * (MAX_SUMMARY_BYTES + 1))
    huge = dataclasses.replace(night, values={EVAL_FILES_KEY: {"files": {"summary": str(big)}}})
    found, problem = SummaryReader()(huge)
    assert found is None and "MAX_SUMMARY_BYTES" in (problem or "")


def test_only_a_report_the_evaluation_recorded_is_served() -> None:
    files = {"report": "s3://b/evals/night/report.html", "summary": "s3://b/x/summary.json"}
    night = record("failed", **{EVAL_FILES_KEY: {"files": files, "conn_id": "aws"}})
    assert report_location(night) == ("s3://b/evals/night/report.html", "aws")
    older = record("success", **{RETURN_VALUE: {"files": {"report": "file:///r/report.html"}}})
    assert report_location(older) == ("file:///r/report.html", None)
    with pytest.raises(ReportMissing, match="wrote no report"):
        report_location(record("failed"))
    elsewhere = record("success", **{EVAL_FILES_KEY: {"files": {"report": "file:///etc/passwd"}}})
    with pytest.raises(ReportMissing, match=r"not a report\.html"):
        report_location(elsewhere)


def test_the_html_helpers_escape_and_keep_links_to_what_they_should_open() -> None:
    assert duration(timedelta(days=2, hours=3)) == "2 d 3 h"
    assert duration(timedelta(hours=1, minutes=5)) == "1 h 05 min"
    assert duration(timedelta(seconds=75)) == "1 min 15 s"
    assert duration(timedelta(seconds=-1)) == "expired"
    assert external_link("javascript:alert(1)", "x") == "x"
    assert external_link(None, "<b>") == "&lt;b&gt;"
    assert 'target="_blank" rel="noopener noreferrer"' in external_link("https://c/b/1", "b")
    link = top_link('/dags/"x"', "<d>", class_="task")
    assert link == '<a href="/dags/&quot;x&quot;" target="_top" class="task">&lt;d&gt;</a>'
