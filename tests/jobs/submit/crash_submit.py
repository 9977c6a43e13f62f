"""A submitting process that dies (SIGKILL, no clean-up) at a chosen point.

Run as ``python -m tests.jobs.submit.crash_submit BASE_URL KEY STAGING POINT`` by
tests/jobs/submit/test_crash_points.py: it stages the same requests, loads the job's ledger from the
staging folder (``ledger.json``, as a task retry on another worker would) and submits, killing
itself at POINT. ``none`` runs to the end, as the retry does.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from airflow_batches.api import Client
from airflow_batches.jobs._store import JobStore
from airflow_batches.jobs.prepare import RequestValidator, records_from_items
from airflow_batches.jobs.submit import FileLedger, Ledger, Registry, submit_job

POINTS = ("before_intent", "after_intent", "after_create", "none")


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class DyingLedger(FileLedger):
    def __init__(self, store: JobStore, point: str) -> None:
        super().__init__(store)
        self.point = point

    def save(self, ledger: Ledger) -> None:
        shard = ledger.shards[0]
        if self.point == "before_intent" and shard.windows and not shard.batch_id:
            die()  # the window is in memory, not yet on storage
        if self.point == "after_create" and shard.batch_id:
            die()  # the batch exists; its id was never recorded
        super().save(ledger)


def requests() -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"crash-{i}",
            "params": {
                "model": "claude-haiku-4-5",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": f"hello {i}"}],
            },
        }
        for i in range(6)
    ]


def main(base_url: str, key: str, staging: str, point: str) -> None:
    client = Client(api_key=key, base_url=base_url, max_retries=0)
    if point == "after_intent":
        real = client.create_from_body

        def create(*args: Any, **kwargs: Any) -> Any:
            die()  # the window is saved; the call is never sent
            return real(*args, **kwargs)

        client.create_from_body = create  # type: ignore[method-assign]
    root = Path(staging)
    validator = RequestValidator(anthropic_version="2023-06-01")
    done = submit_job(
        records_from_items(requests()),
        validator,
        root=JobStore(root / "job"),
        client=client,
        backend_for=lambda prepared, store: DyingLedger(store, point),
        registry=Registry.at(root, base_url, None),
        job_id="crash-job",
        sleep=lambda s: None,
    )
    print(done.ledger.shards[0].batch_id)


if __name__ == "__main__":
    main(*sys.argv[1:5])
