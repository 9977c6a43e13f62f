"""The Message Batches page in a real browser, on the live stack (api-server, scheduler,
dag-processor, triggerer), as people who sign in see it.

One stack for the module: two nights of an evaluation (the second regresses and fails its
threshold), then a job left waiting in the triggerer while the emulator holds its batches.
Headless Chromium (Debian's, ``scripts/browser.py``) signs in through the login page and
opens the page in the UI's navigation; what it shows is read from the DOM: the job's row and
numbers, the charts' points, the nights and their links, each followed to what it opens.
A second user, kept from the job's DAG by the auth manager, sees none of it. The plugin is
the installed package's (its ``airflow.plugins`` entry point); nothing is copied anywhere.

Set ``AIRFLOW_BATCHES_SCREENSHOTS`` to a folder to keep the screenshot (docs/images has the
one the README shows).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_batches.emulator.config import EmulatorConfig
from airflow_batches.emulator.testing import RunningEmulator, serve_emulator
from airflow_batches.evals._svg import PALETTE
from tests.devtools import Chromium
from tests.e2e.ui_stack import UiStack, sign_in, wait_for
from tests.evals.pngs import colours

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DAGS = Path(__file__).parent / "ui_dags"
MODELS = ["claude-haiku-4-5", "claude-sonnet-4-5"]
SCREENSHOTS = "AIRFLOW_BATCHES_SCREENSHOTS"
PAGE = "/message-batches/"
# The page, as the UI shows it: in its frame, under the navigation's "Message Batches".
IN_UI = "/plugin/message-batches"
TASKS = ("submit", "wait", "fetch", "evaluate")


@dataclass
class World:
    stack: UiStack
    emulator: RunningEmulator
    nights: list[str]
    job_run: str
    browser: Chromium

    def frame(self, expression: str) -> Any:
        """Evaluate ``expression`` with ``doc`` the page's document inside the UI's frame."""
        return self.browser.evaluate(
            "(() => { const doc = document.querySelector('iframe').contentDocument; "
            f"return ({expression}); }})()"
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("ui")
    config = EmulatorConfig(
        latency=0.01,
        workers=2,
        responder="airflow_batches.emulator.evalset:eval_responder",
        responder_options={"error_rates": {MODELS[0]: 0.1}, "seed": 7},
    )
    with serve_emulator(config, data_dir=folder / "emulator") as emulator:
        conn = {"conn_type": "message_batches", "host": emulator.base_url}
        conn["password"] = emulator.api_key
        stack = UiStack(
            DAGS,
            users={"alice": "viewer", "bob": "viewer"},
            hidden={"bob": ["ui_jobs"]},
            env={
                "AIRFLOW_CONN_MESSAGE_BATCHES_DEFAULT": json.dumps(conn),
                "LIVE_RESULTS": f"file://{folder / 'results'}",
                "AIRFLOW__AIRFLOW_BATCHES__STAGING_PATH": f"file://{folder / 'staging'}",
            },
        )
        with stack, Chromium() as browser:
            nights = []
            for error_rate, expected in ((0.1, "success"), (0.8, "failed")):
                emulator.configure(
                    responder_options={"error_rates": {MODELS[0]: error_rate}, "seed": 7}
                )
                run_id = stack.trigger("ui_nightly")
                stack.wait_for_run("ui_nightly", run_id, timeout=240, expected_state=expected)
                nights.append(run_id)
            emulator.configure(paused=True)  # the job's batches stay in progress
            job_run = stack.trigger("ui_jobs")
            stack.wait_for_task_state("ui_jobs", job_run, "wait", "deferred", timeout=180)
            browser.call(
                "Emulation.setDeviceMetricsOverride",
                width=1400,
                height=1100,
                deviceScaleFactor=1,
                mobile=False,
            )
            yield World(stack, emulator, nights, job_run, browser)
            emulator.configure(paused=False)


def open_in_ui(world: World, user: str) -> None:
    """Sign ``user`` in and open the page from the UI's navigation, in its frame."""
    browser, stack = world.browser, world.stack
    sign_in(browser, stack, user)
    browser.navigate(stack.base_url + "/")
    link = wait_for(
        browser,
        "(a => a && a.getAttribute('href'))"
        "([...document.querySelectorAll('a')].find(a => a.textContent.trim() === "
        "'Message Batches'))",
        timeout=60,
        what="the navigation's Message Batches entry",
    )
    assert link.endswith(IN_UI)
    browser.navigate(stack.base_url + link)
    wait_for(
        browser,
        "(f => !!(f && f.contentDocument && f.contentDocument.querySelector('#who')))"
        "(document.querySelector('iframe'))",
        timeout=60,
        what="the page in the UI's frame",
    )


def rows_of_jobs(world: World) -> list[dict[str, Any]]:
    return list(
        world.frame(
            "[...doc.querySelectorAll('#jobs tr[data-job]')].map(r => ({"
            "dag: r.dataset.dag, job: r.dataset.job, text: r.innerText,"
            "batches: [...r.querySelectorAll('li[data-batch]')].map(li => li.innerText),"
            "links: [...r.querySelectorAll('a')].map(a => [a.className, a.href]),"
            "counts: Object.fromEntries([...r.querySelectorAll('[data-state]')]"
            ".map(s => [s.dataset.state, +s.dataset.count]))}))"
        )
    )


def screenshot(world: World, folder: Path) -> Path:
    data = world.browser.call("Page.captureScreenshot", format="png")["data"]
    path = folder / "batches-page.png"
    path.write_bytes(base64.b64decode(data))
    if os.environ.get(SCREENSHOTS):
        shutil.copy(path, Path(os.environ[SCREENSHOTS]) / path.name)
    return path


def test_the_page_shows_the_job_in_flight_and_the_evaluation_night_by_night(
    world: World, tmp_path: Path
) -> None:
    open_in_ui(world, "alice")
    assert world.frame("doc.querySelector('#who').textContent").startswith("Signed in as alice")
    (row,) = rows_of_jobs(world)  # the nights' jobs were fetched: only the waiting one is left
    assert row["dag"] == "ui_jobs" and world.job_run in row["text"]
    assert row["counts"] == {"processing": 16}  # 8 questions to each of the 2 models
    assert [b.split()[1:3] for b in row["batches"]] == [[m, "in_progress"] for m in MODELS]
    assert "23 h" in row["text"]  # the batches expire 24 h after their creation
    assert "$" in row["text"]  # the estimate
    batch_links = [href for css, href in row["links"] if "/_emulator/batches/" in href]
    (task_link,) = [href for css, href in row["links"] if css == "task"]
    assert len(batch_links) == 2
    run = urllib.parse.quote(world.job_run, safe="")
    assert task_link == f"{world.stack.base_url}/dags/ui_jobs/runs/{run}/tasks/submit"

    nights = world.frame(
        "[...doc.querySelectorAll('article.evaluation tr[data-run]')].map(r => ({"
        "run: r.dataset.run, text: r.innerText,"
        "regressions: (r.querySelector('a.regressions') || {}).href || null,"
        "report: (r.querySelector('a.report') || {}).href || null}))"
    )
    assert [n["run"] for n in nights] == world.nights[::-1]  # the newest night first
    latest, first = nights
    assert "not met" in latest["text"] and "regressed" in latest["text"]
    assert "(baseline)" in first["text"] and "no baseline" in first["text"]
    assert latest["regressions"].endswith("#regressions") and latest["report"]
    charts = world.frame(
        "[...doc.querySelectorAll('article.evaluation svg.chart')].map(svg => ({"
        "title: svg.querySelector('title').textContent,"
        "points: [...svg.querySelectorAll('circle.point')].map(c => [c.dataset.series, "
        "+c.dataset.value])}))"
    )
    assert [c["title"] for c in charts] == [
        "Pass rate per model",
        "Mean score per model",
        "Cost (batch prices) per model",
        "Cost per correct answer per model",
    ]
    for chart in charts:  # each model, each night
        assert sorted(series for series, _ in chart["points"]) == sorted(MODELS * 2)
    haiku = [value for series, value in charts[0]["points"] if series == MODELS[0]]
    assert haiku[1] < haiku[0]  # the night it regressed, drawn lower

    painted = colours(screenshot(world, tmp_path))
    for colour in PALETTE[:2]:  # the two models' lines are on screen
        rgb = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
        assert painted[rgb] > 200, f"{colour} is hardly drawn: {painted[rgb]} pixels"

    # The row's links open: each batch's page, the task in the UI.
    for href in batch_links:
        assert httpx.get(href).status_code == 200
    world.browser.navigate(task_link)
    wait_for(
        world.browser,
        "document.body.innerText.includes('SubmitBatchOperator')",
        timeout=30,
        what="the submit task's page in the UI",
    )


def extra_links(world: World, dag_id: str, run_id: str, task_id: str) -> dict[str, str]:
    """The extra links the UI shows on the task's Details tab, by their text."""
    run = urllib.parse.quote(run_id, safe="")
    world.browser.navigate(
        f"{world.stack.base_url}/dags/{dag_id}/runs/{run}/tasks/{task_id}/details"
    )
    found = wait_for(
        world.browser,
        "(links => links.length && Object.fromEntries(links.map(a => [a.textContent.trim(), "
        "a.href])))([...document.querySelectorAll('a')].filter(a => "
        "(a.getAttribute('href') || '').startsWith('/message-batches/')))",
        timeout=30,
        what=f"the extra links of {task_id}",
    )
    return dict(found)


def test_every_task_links_to_the_page_and_the_report_opens(world: World) -> None:
    night = world.nights[1]
    links = {task: extra_links(world, "ui_nightly", night, task) for task in TASKS}
    assert {task: sorted(found) for task, found in links.items()} == {
        "submit": ["Batches"],
        "wait": ["Batches"],
        "fetch": ["Batches"],
        "evaluate": ["Batches", "Eval report"],
    }
    # The fetch's: the run's jobs, this one marked, fetched, with what it cost.
    world.browser.navigate(links["fetch"]["Batches"])
    (row,) = wait_for(
        world.browser,
        "(rows => rows.length && rows.map(r => [r.className, r.innerText]))"
        "([...document.querySelectorAll('#jobs tr[data-job]')])",
        timeout=30,
        what="the run's jobs",
    )
    assert row[0] == "marked" and "fetched" in row[1] and "billed" in row[1]
    report_from_run = world.browser.evaluate("document.querySelector('#reports a.report').href")
    assert report_from_run == links["evaluate"]["Eval report"]
    # The evaluation's report, served from its file:// storage by the api-server.
    world.browser.navigate(links["evaluate"]["Eval report"])
    assert world.browser.evaluate("document.title") == f"Evaluation ui_nightly {night}"
    regressed = world.browser.evaluate("document.querySelectorAll('#regressions tr').length")
    assert regressed > 1  # a header and the regressed requests
    assert world.browser.evaluate("!!document.querySelector('#gate.bad')")


def test_a_user_kept_from_the_dag_sees_none_of_its_jobs(world: World) -> None:
    open_in_ui(world, "bob")
    assert world.frame("doc.querySelector('#who').textContent").startswith("Signed in as bob")
    assert rows_of_jobs(world) == []
    assert world.frame("!!doc.querySelector('#no-jobs')")
    # The DAGs bob may read are there: the evaluation's nights.
    assert world.frame("doc.querySelectorAll('article.evaluation tr[data-run]').length") == 2
    page = world.frame("doc.body.innerText")
    assert "ui_jobs" not in page and "msgbatch_" not in page
    # Asked directly, with bob's session: the job's run, the JSON.
    run = urllib.parse.urlencode({"dag_id": "ui_jobs", "run_id": world.job_run})
    world.browser.navigate(f"{world.stack.base_url}{PAGE}run?{run}")
    assert world.browser.evaluate("!!document.querySelector('#no-jobs')")
    # (From the UI's own page: the plugin's pages let no script fetch anything.)
    world.browser.navigate(f"{world.stack.base_url}/")
    jobs = world.browser.evaluate(
        "fetch('/message-batches/api/jobs?dag_id=ui_jobs').then(r => r.json())"
    )
    assert jobs["jobs"] == []
    # And without a session, nothing at all.
    anonymous = httpx.get(f"{world.stack.base_url}{PAGE}api/jobs")
    assert anonymous.status_code == 401
    assert httpx.get(f"{world.stack.base_url}{PAGE}").status_code == 401


def test_the_job_leaves_the_flight_once_fetched(world: World) -> None:
    world.emulator.configure(paused=False)
    world.stack.wait_for_run("ui_jobs", world.job_run, timeout=180)
    open_in_ui(world, "alice")
    assert rows_of_jobs(world) == []
    run = urllib.parse.urlencode({"dag_id": "ui_jobs", "run_id": world.job_run})
    world.browser.navigate(f"{world.stack.base_url}{PAGE}run?{run}")
    (text,) = world.browser.evaluate(
        "[...document.querySelectorAll('#jobs tr[data-job]')].map(r => r.innerText)"
    )
    assert "fetched" in text and "succeeded 16" in text
