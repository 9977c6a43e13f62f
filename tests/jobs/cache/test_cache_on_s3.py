"""The cross-run cache and pre-flight's receipts on S3 (moto on loopback): a lookup, a fetch's
segment, a compaction and a recalled job, through the same paths a deployment uses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_batches.jobs._store import JobStore, clone
from airflow_batches.jobs.cache import CacheStep, CrossRunCache, endpoint_identity
from airflow_batches.jobs.cache._compact import Bounds
from airflow_batches.jobs.cache._layout import CACHED_FILE
from airflow_batches.jobs.prepare import (
    ModelMatrix,
    Parts,
    RequestValidator,
    Sidecar,
    Staged,
    envelope_parts,
    records_from_items,
    stage_requests,
)

BUCKET = "cache-tests"
MODELS = ["claude-haiku-4-5", "claude-sonnet-4-5"]


@pytest.fixture
def s3() -> Iterator[Any]:
    import boto3
    from moto.server import ThreadedMotoServer
    from upath import UPath

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        _, port = server.get_host_and_port()
        options = {"endpoint_url": f"http://127.0.0.1:{port}", "region_name": "us-east-1"}
        boto3.client(
            "s3", aws_access_key_id="testing", aws_secret_access_key="testing", **options
        ).create_bucket(Bucket=BUCKET)
        yield UPath(f"s3://{BUCKET}", key="testing", secret="testing", client_kwargs=options)
    finally:
        server.stop()


class Log:
    def info(self, message: str, *args: Any) -> None:
        pass

    warning = info


def test_a_night_then_a_recalled_night_on_s3(s3: Any) -> None:
    now = [datetime(2026, 12, 1, tzinfo=UTC)]
    cache = CrossRunCache(
        s3 / "cache",
        endpoint=endpoint_identity("http://127.0.0.1:8089"),
        anthropic_version="2023-06-01",
        max_age=timedelta(days=30),
        clock=lambda: now[0],
    )
    step = CacheStep(
        cache, RequestValidator(anthropic_version="2023-06-01"), ModelMatrix.of(MODELS).part_of
    )
    items = [
        {
            "custom_id": f"q{i}",
            "params": {"messages": [{"role": "user", "content": f"question {i}"}]},
            "metadata": {"i": i},
        }
        for i in range(5)
    ]

    def night(name: str) -> tuple[Staged, bool]:
        sidecar = Sidecar()
        records = Parts(
            envelope_parts(lambda: records_from_items(items), sidecar, ModelMatrix.of(MODELS))
        )
        validator = RequestValidator(
            anthropic_version="2023-06-01", defaults={"max_tokens": 8}, metadata=sidecar.metadata
        )
        root = JobStore(s3 / "staging" / name)
        digest, staged = step.recall(root, records, validator, "fail", sidecar, Log())
        recalled = staged is not None
        if staged is None:
            store, prepared = stage_requests(root, records, validator, sidecar=sidecar)
            staged = Staged(store, prepared)
            assert digest is not None
            step.remember(digest, staged, sidecar)
        return step.stage(staged, Log()), recalled

    first, recalled = night("n1")
    assert not recalled and first.sent is not None and first.sent.request_count == 10
    writer = cache.writer(first.store, first.cache)
    for model in ("m0", "m1"):
        for i in range(5):
            writer.add(
                f"{model}_q{i}", "msgbatch_1", json.dumps({"type": "succeeded", "i": i}).encode()
            )
    assert writer.commit() == 10

    now[0] += timedelta(days=1)
    second, recalled = night("n2")
    assert recalled and second.sent is None and second.cache.hits == 10
    cached = [json.loads(x) for x in second.store.path(CACHED_FILE).read_bytes().splitlines()]
    assert sorted(c["custom_id"] for c in cached) == sorted(
        f"m{m}_q{i}" for m in (0, 1) for i in range(5)
    )

    # Past the bound: misses; the next fetch's compaction replaces the segment, then deletes it.
    now[0] += timedelta(days=31)
    third, _ = night("n3")
    assert third.cache.hits == 0 and third.sent is not None
    writer = cache.writer(third.store, third.cache)
    writer.add("m0_q0", "msgbatch_2", b'{"type":"succeeded"}')
    writer.commit()
    now[0] += Bounds().grace
    writer = cache.writer(third.store, third.cache)
    writer.add("m0_q1", "msgbatch_3", b'{"type":"succeeded"}')
    writer.commit()
    names = {p.name for p in (s3 / "cache" / "v2").iterdir()}
    # Left: the two new segments; the expired one and the empty one that replaced it are gone.
    assert len([n for n in names if n.endswith(".jsonl")]) == 2
    assert not [n for n in names if n.startswith("20261201")]


def test_a_clone_on_one_store_is_copied_inside_it(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    body = b"".join(b'{"custom_id":"q%d","params":{}}\n' % i for i in range(20_000))
    source, target = s3 / "staging" / "n1" / "requests.jsonl", s3 / "staging" / "n2" / "r.jsonl"
    source.write_bytes(body)
    copies: list[tuple[str, str]] = []
    copy = source.fs.copy

    def spy(path1: str, path2: str, **kwargs: Any) -> Any:
        copies.append((path1, path2))
        return copy(path1, path2, **kwargs)

    monkeypatch.setattr(source.fs, "copy", spy)
    clone(source, target)
    assert copies == [(source.path, target.path)]  # CopyObject: no byte through this process
    assert target.read_bytes() == body
