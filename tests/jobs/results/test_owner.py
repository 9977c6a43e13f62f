"""Whose results a destination holds (``jobs/results/_owner``): by run and task, never by job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_batches.jobs.results import (
    OWNER_FILE,
    DestinationHeldError,
    RunRef,
    check_destination,
    claim_destination,
    release_destination,
)

RUN = RunRef(dag_id="d", run_id="manual__1", task_id="fetch")


def publish(folder: Path, run: RunRef | None, job_id: str = "j1") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"job_id": job_id, "timings": {"fetched_at": "2026-03-01T00:00:00"}}
    if run is not None:
        manifest["run"] = run.model_dump()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_a_free_folder_and_the_runs_own_pass(tmp_path: Path) -> None:
    check_destination(tmp_path / "new", RUN)
    publish(tmp_path, RUN)
    check_destination(tmp_path, RUN)  # a retry or a cleared run: the same ids
    claim_destination(tmp_path, RUN, "j1")
    check_destination(tmp_path, RUN)


def test_another_run_is_refused_though_the_job_is_the_same(tmp_path: Path) -> None:
    publish(tmp_path, RUN, job_id="same-job")
    other = RunRef(dag_id="d", run_id="manual__2", task_id="fetch")
    with pytest.raises(DestinationHeldError) as caught:
        check_destination(tmp_path, other, outcome="nothing was submitted")
    text = str(caught.value)
    assert "holds the results of another run (dag_id='d', run_id='manual__1'" in text
    assert "job same-job, published at 2026-03-01T00:00:00" in text
    assert "refused for this run (dag_id='d', run_id='manual__2'" in text
    assert "nothing was submitted" in text and "{{ run_id }}" in text
    assert caught.value.destination == str(tmp_path)
    sibling = RunRef(dag_id="d", run_id="manual__1", task_id="fetch_other")
    with pytest.raises(DestinationHeldError, match="another task of this run"):
        check_destination(tmp_path, sibling)


def test_a_claim_holds_while_its_run_may_go_on(tmp_path: Path) -> None:
    claim_destination(tmp_path, RUN, "j1")
    other = RunRef(dag_id="d", run_id="manual__2", task_id="fetch")
    for answer in (True, None):
        with pytest.raises(DestinationHeldError, match="is claimed by another run"):
            check_destination(tmp_path, other, is_running=lambda run, a=answer: a)
    asked: list[RunRef] = []
    check_destination(tmp_path, other, is_running=lambda run: asked.append(run) or False)
    assert asked == [RUN]
    release_destination(tmp_path)
    assert not (tmp_path / OWNER_FILE).exists()
    release_destination(tmp_path)  # gone already: fine


def test_manifests_without_a_run_and_stray_files(tmp_path: Path) -> None:
    publish(tmp_path, None, job_id="old")
    check_destination(tmp_path, RUN)  # the submit leaves it to the fetch, which knows the job
    check_destination(tmp_path, RUN, legacy=lambda manifest: manifest["job_id"] == "old")
    with pytest.raises(DestinationHeldError, match=r"another job \(old; its manifest names no"):
        check_destination(tmp_path, RUN, legacy=lambda manifest: False)
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "results.jsonl").write_text("{}\n")
    with pytest.raises(DestinationHeldError, match=r"results\.jsonl exists and was not written"):
        check_destination(stray, RUN, names=["results.jsonl"])
