"""The registry on S3 (moto on loopback) sees what other processes write after its first look.

fsspec's s3fs caches every listing for the life of the process: without ``_store.fresh`` a
claim or an intent written by another worker after this process first listed the folder
stayed invisible, and a retry adopted a batch another run's lost create had made (seen in the
distributed scale test). Another process is stood in for by boto3, which shares no cache.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_batches.jobs._store import JobStore
from airflow_batches.jobs.submit import Registry
from airflow_batches.jobs.submit._registry import Claim, Intent, Window

BUCKET = "registry-tests"


@pytest.fixture
def s3() -> Iterator[tuple[Any, Any]]:
    import boto3
    from moto.server import ThreadedMotoServer
    from upath import UPath

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        _, port = server.get_host_and_port()
        endpoint = f"http://127.0.0.1:{port}"
        options = {"endpoint_url": endpoint, "region_name": "us-east-1"}
        client = boto3.client(
            "s3", aws_access_key_id="testing", aws_secret_access_key="testing", **options
        )
        client.create_bucket(Bucket=BUCKET)
        root = UPath(
            f"s3://{BUCKET}/staging/_registry/scope",
            key="testing",
            secret="testing",
            client_kwargs=options,
        )
        yield client, root
    finally:
        server.stop()


def put(client: Any, key: str, data: Any) -> None:
    body = json.dumps(data).encode()
    client.put_object(Bucket=BUCKET, Key=f"staging/_registry/scope/{key}", Body=body)


def intent(job_id: str, *, batch_id: str | None = None, seen: bool = False) -> Intent:
    opened = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)
    window = Window(
        token=f"tok-{job_id}",
        opened=opened,
        seen=opened + timedelta(seconds=2) if seen else None,
        until=opened + timedelta(minutes=10),
    )
    return Intent(job_id=job_id, shard=0, request_count=12, window=window, batch_id=batch_id)


def test_claims_written_by_another_process_after_the_first_look_are_seen(
    s3: tuple[Any, Any],
) -> None:
    client, root = s3
    registry = Registry(root)
    registry.claim(Claim(batch_id="msgbatch_mine", job_id="r00/inline", shard=0))
    assert registry.claimed() == {"msgbatch_mine"}  # the folder is listed (and was cached)
    put(
        client,
        "claims/msgbatch_theirs.json",
        {"batch_id": "msgbatch_theirs", "job_id": "r01", "shard": 0},
    )
    assert registry.claimed() == {"msgbatch_mine", "msgbatch_theirs"}


def test_intents_opened_and_rewritten_by_another_process_are_seen(s3: tuple[Any, Any]) -> None:
    client, root = s3
    registry = Registry(root)
    registry.open(intent("r00/inline"))
    when = datetime(2026, 12, 2, 4, 0, 1, tzinfo=UTC)
    assert registry.rivals("r00/inline", 0, 12, when) == []
    # Another run's create call, opened after this process listed the intents: a rival.
    put(client, "intents/tok-r01.json", intent("r01/inline").model_dump(mode="json"))
    assert [i.job_id for i in registry.rivals("r00/inline", 0, 12, when)] == ["r01/inline"]
    # Its failure seen: the object is rewritten with another size, and read whole.
    rewritten = intent("r01/inline", seen=True).model_dump(mode="json")
    rewritten["window"]["note"] = "x" * 500
    put(client, "intents/tok-r01.json", rewritten)
    [rival] = registry.rivals("r00/inline", 0, 12, when)
    assert rival.window.seen is not None


def test_day_folders_written_by_another_process_are_seen(s3: tuple[Any, Any]) -> None:
    # The layout of today's writers: each entry under its day (a prefix on S3).
    client, root = s3
    registry = Registry(root / "days")  # moto keeps the other tests' objects: a folder apart
    created = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)
    registry.claim(Claim(batch_id="msgbatch_mine", job_id="r00", shard=0, created_at=created))
    assert registry.claimed(since=created) == {"msgbatch_mine"}
    assert registry.claimed() == {"msgbatch_mine"}
    theirs = {"batch_id": "msgbatch_theirs", "job_id": "r01", "shard": 0}
    put(client, "days/claims/2026-12-02/msgbatch_theirs.json", theirs)
    later = {**theirs, "batch_id": "msgbatch_later"}
    put(client, "days/claims/2026-12-03/msgbatch_later.json", later)
    assert registry.claimed(since=created) == {"msgbatch_mine", "msgbatch_theirs", "msgbatch_later"}
    assert registry.claimed(since=created, until=created) == {"msgbatch_mine", "msgbatch_theirs"}
    assert len(registry.claimed()) == 3  # every day's folder, listed afresh
    assert registry.is_claimed("msgbatch_theirs", created)

    when = created + timedelta(seconds=1)
    rival = intent("r01/inline")
    rival.window.token = "20261202-" + "a" * 32
    put(client, f"days/intents/2026-12-02/{rival.window.token}.json", rival.model_dump(mode="json"))
    assert [i.job_id for i in registry.rivals("r00/inline", 0, 12, when)] == ["r01/inline"]
    assert registry.intent(rival.window.token) == rival


def test_a_job_store_reads_an_object_another_process_wrote_after_it_looked(
    s3: tuple[Any, Any],
) -> None:
    client, root = s3
    store = JobStore(root)
    assert store.read_json("orphans", "msgbatch_x.json") is None
    put(client, "orphans/msgbatch_x.json", {"batch_id": "msgbatch_x"})
    assert store.read_json("orphans", "msgbatch_x.json") == {"batch_id": "msgbatch_x"}
