"""The contenders of ``compare.py`` that run in a child process (``compare.py --child MODE``),
each timing its own work from inside (imports and interpreter start excluded) and returning
its figures. The SDK's contenders run under the bench's virtualenv: import the SDK inside them.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _floors import child_p1_floor, child_p2_floor
from _inputs import API_KEY, count_lines


def child_p1_ours(work: Path, base_url: str) -> dict[str, Any]:
    from airflow_batches.api import Client
    from airflow_batches.jobs._store import JobStore
    from airflow_batches.jobs.prepare import (
        REQUESTS_FILE,
        RequestValidator,
        records_from_jsonl,
        stage_requests,
    )
    from airflow_batches.jobs.submit import JobSubmitter, MemoryLedger, new_ledger

    staging = Path(tempfile.mkdtemp(prefix="staging-", dir=work))
    try:
        t0, cpu0 = time.perf_counter(), time.process_time()
        validator = RequestValidator(anthropic_version="2023-06-01")
        with (work / "p1-requests.jsonl").open("rb") as stream:
            job, prepared = stage_requests(JobStore(staging), records_from_jsonl(stream), validator)
        t1, cpu1 = time.perf_counter(), time.process_time()
        with Client(api_key=API_KEY, base_url=base_url, timeout=600) as client:
            ledger = new_ledger(prepared, anthropic_version="2023-06-01")
            JobSubmitter(client, MemoryLedger(), lambda: job.path(REQUESTS_FILE).open("rb")).submit(
                ledger
            )
        t2, cpu2 = time.perf_counter(), time.process_time()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {
        "seconds": t2 - t0,
        "cpu_s": cpu2 - cpu0,
        "validate_stage_s": t1 - t0,
        "validate_stage_cpu_s": cpu1 - cpu0,
        "upload_s": t2 - t1,
    }


def child_p1_sdk(work: Path, base_url: str) -> dict[str, Any]:
    import anthropic

    t0 = time.perf_counter()
    with (work / "p1-requests.jsonl").open("rb") as stream:
        requests = [json.loads(line) for line in stream if line.strip()]
    t1 = time.perf_counter()
    client = anthropic.Anthropic(api_key=API_KEY, base_url=base_url, max_retries=0, timeout=600)
    client.messages.batches.create(requests=requests)
    t2 = time.perf_counter()
    return {"seconds": t2 - t0, "load_s": t1 - t0, "create_s": t2 - t1}


def child_p2_ours(work: Path, base_url: str) -> dict[str, Any]:
    """What ``FetchResultsOperator`` runs: every line checked, tallied and written, then the
    manifest."""
    import logging
    from datetime import UTC, datetime

    from airflow_batches.api import Client
    from airflow_batches.api._pricing import load_price_table
    from airflow_batches.jobs._descriptor import BatchInfo, JobDescriptor
    from airflow_batches.jobs.results import FetchOptions, FetchState, FetchWorkflow, Published

    count = count_lines(work / "p2-results.jsonl")
    out = Path(tempfile.mkdtemp(prefix="p2-ours-", dir=work))
    try:
        t0, cpu0 = time.perf_counter(), time.process_time()
        with Client(api_key=API_KEY, base_url=base_url, timeout=600) as client:
            job = JobDescriptor(
                job_id="p2",
                fingerprint="p2",
                conn_id="bench",
                job_dir="",
                request_count=count,
                anthropic_version="2023-06-01",
                batches=[BatchInfo(id="msgbatch_p2", request_count=count)],
                submitted_at=datetime.now(UTC),
            )
            flow = FetchWorkflow(
                job=job,
                state=FetchState.start(job),
                client=client,
                prices=load_price_table(),
                log=logging.getLogger("bench"),
                options=FetchOptions(overwrite=True),
            )
            assert flow.next_wait() is None
            published = flow.publish(out, datetime.now(UTC))
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        assert isinstance(published, Published), "the batch had not ended"
        lines = published.manifest.lines
    finally:
        shutil.rmtree(out, ignore_errors=True)
    if lines != count:
        raise RuntimeError(f"ours published {lines} lines of {count}")
    return {"seconds": seconds, "cpu_s": cpu}


def child_p2_sdk(work: Path, base_url: str) -> dict[str, Any]:
    """What the official provider's hook calls: ``messages.batches.results`` (every line
    parsed into the SDK's models), each written back as JSON."""
    import anthropic

    target = work / "p2-sdk.jsonl"
    t0 = time.perf_counter()
    client = anthropic.Anthropic(api_key=API_KEY, base_url=base_url, max_retries=0, timeout=600)
    with target.open("w") as out:
        for result in client.messages.batches.results("msgbatch_p2"):
            out.write(result.to_json(indent=None) + "\n")
    seconds = time.perf_counter() - t0
    target.unlink()
    return {"seconds": seconds}


CHILDREN: dict[str, Callable[[Path, str], dict[str, Any]]] = {
    "p2-ours": child_p2_ours,
    "p2-sdk": child_p2_sdk,
    "p2-floor": child_p2_floor,
    "p1-ours": child_p1_ours,
    "p1-sdk": child_p1_sdk,
    "p1-floor": child_p1_floor,
}
