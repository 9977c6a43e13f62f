"""The whole job on S3 (moto on loopback) through ObjectStoragePath: input, staging, results."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.airflow_release import HAS_TASK_STATE_STORE
from tests.operators.conftest import DagRunner, make_requests

BUCKET = "batch-jobs"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _forget_stores()
    try:
        _, port = server.get_host_and_port()
        endpoint = f"http://127.0.0.1:{port}"
        conn = {
            "conn_type": "aws",
            "login": "testing",
            "password": "testing",
            "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"},
        }
        monkeypatch.setenv("AIRFLOW_CONN_AWS_TEST", json.dumps(conn))
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=BUCKET)
        yield client
    finally:
        server.stop()
        _forget_stores()


def _forget_stores() -> None:
    """Airflow keeps one filesystem per storage connection for the process: a test's moto
    server on another port must not be reached through the one an earlier test made."""
    from airflow.sdk.io import store

    for alias in [a for a in store._STORE_CACHE if "aws_test" in a]:
        del store._STORE_CACHE[alias]


def keys(s3: Any, prefix: str) -> list[str]:
    listing = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def test_job_on_s3_with_resubmission(
    dag_runner: DagRunner, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Staging comes from the [airflow_batches] section, connection included.
    monkeypatch.setenv("AIRFLOW__AIRFLOW_BATCHES__STAGING_PATH", "s3://batch-jobs/staging")
    monkeypatch.setenv("AIRFLOW__AIRFLOW_BATCHES__STAGING_CONN_ID", "aws_test")
    body = "".join(json.dumps(r) + "\n" for r in make_requests(25))
    s3.put_object(Bucket=BUCKET, Key="in/requests.jsonl", Body=body.encode())
    dag_runner.emulator.configure(result_errors={"api_error": 0.3}, seed=11)
    result = dag_runner.run(
        """
        submit = SubmitBatchOperator(task_id="submit", requests_path="s3://batch-jobs/in/requests.jsonl",
            requests_conn_id="aws_test", max_requests_per_batch=10)
        wait = BatchSensor(task_id="wait", job=submit.output, poke_interval=0.05)
        fetch = FetchResultsOperator(task_id="fetch", job=submit.output,
            destination="s3://batch-jobs/out/{{ ds_nodash }}", destination_conn_id="aws_test",
            split_by_type=True, resubmit_failed=True, poke_interval=0.05,
            asset=Asset("s3_results", uri="s3://batch-jobs/out"))
        submit >> wait >> fetch
        """
    )
    assert result.state == "success", result.states
    job = result.xcom("submit")
    assert job["job_dir_conn_id"] == "aws_test"
    assert job["job_dir"].startswith("s3://aws_test@batch-jobs/staging/")  # conn id kept
    staged = keys(s3, "staging/")
    assert any(k.endswith("/requests.jsonl") for k in staged)
    # Before Airflow 3.3 the ledgers and the fetch's attempts are kept on the staging storage.
    state = {
        k.rsplit("/", 3)[1] + ":" + k.rsplit("/", 1)[1].split(".")[1]
        for k in staged
        if "/state/" in k
    }
    assert state == (
        set() if HAS_TASK_STATE_STORE else {"submit:ledger", "fetch:fetch", "fetch:followup"}
    )
    out = keys(s3, "out/")
    names = sorted(k.rsplit("/", 1)[1] for k in out)
    assert names == [
        "canceled.jsonl",
        "errored.jsonl",
        "expired.jsonl",
        "manifest.json",
        "succeeded.jsonl",
    ]  # no partial or temporary object left behind
    prefix = out[0].rsplit("/", 1)[0]
    manifest = json.loads(
        s3.get_object(Bucket=BUCKET, Key=f"{prefix}/manifest.json")["Body"].read()
    )
    assert manifest["lines"] == 25
    assert len(manifest["attempts"]) >= 2
    lines = []
    for kind in ("succeeded", "errored", "canceled", "expired"):
        data = s3.get_object(Bucket=BUCKET, Key=f"{prefix}/{kind}.jsonl")["Body"].read()
        lines += [json.loads(x)["custom_id"] for x in data.splitlines()]
    assert sorted(lines) == sorted(f"r{i}" for i in range(25))


def test_results_are_written_straight_to_their_key_and_a_failed_write_leaves_nothing(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import uuid

    from airflow.sdk import ObjectStoragePath

    from airflow_batches.jobs._store import atomic_writer

    # A connection of its own: filesystems are cached per connection id, and an earlier
    # test's moto server (another port) is gone.
    conn_id = f"aws_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", os.environ["AIRFLOW_CONN_AWS_TEST"])
    target = ObjectStoragePath(f"s3://{BUCKET}/direct/results.jsonl", conn_id=conn_id)
    with atomic_writer(target) as out:
        out.write(b"x" * (6 * 1024 * 1024))  # past the multipart threshold: parts are uploaded
        out.write(b"\n")
        # Nothing under any name until the upload is complete: no hidden copy to rename.
        assert keys(s3, "direct/") == []
    assert keys(s3, "direct/") == ["direct/results.jsonl"]
    assert s3.head_object(Bucket=BUCKET, Key="direct/results.jsonl")["ContentLength"] == (
        6 * 1024 * 1024 + 1
    )

    broken = ObjectStoragePath(f"s3://{BUCKET}/direct/broken.jsonl", conn_id=conn_id)

    def write_then_fail() -> None:
        with atomic_writer(broken) as out:
            out.write(b"y" * (6 * 1024 * 1024))
            raise RuntimeError("mid-write")

    with pytest.raises(RuntimeError, match="mid-write"):
        write_then_fail()
    assert keys(s3, "direct/") == ["direct/results.jsonl"]
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
