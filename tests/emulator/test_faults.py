"""Injected faults: error answers, dropped connections, slow answers, errored results."""

from __future__ import annotations

from collections import Counter

import anthropic
import httpx
import pytest

from airflow_batches.api import (
    APIConnectionError,
    APITimeoutError,
    Client,
    InternalServerError,
    OverloadedError,
)
from airflow_batches.emulator.testing import RunningEmulator
from tests.emulator.conftest import requests


def _client(emulator: RunningEmulator, sleeps: list[float], **kwargs: object) -> Client:
    return Client(
        api_key=emulator.api_key,
        base_url=emulator.base_url,
        sleep=sleeps.append,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("fault", "status", "error_type"),
    [
        ("rate_429", 429, "rate_limit_error"),
        ("rate_500", 500, "api_error"),
        ("rate_529", 529, "overloaded_error"),
    ],
)
def test_error_answers(emulator: RunningEmulator, fault: str, status: int, error_type: str) -> None:
    emulator.configure(faults={"list": {fault: 1.0, "retry_after": 0.25}})
    response = httpx.get(
        f"{emulator.base_url}/v1/messages/batches",
        headers={"x-api-key": emulator.api_key, "anthropic-version": "2023-06-01"},
    )
    assert response.status_code == status
    body = response.json()
    assert body["error"]["type"] == error_type
    assert body["request_id"] == response.headers["request-id"]
    if status in (429, 529):
        assert response.headers["retry-after"] == "0.25"
    assert emulator.admin.stats()["endpoints"]["list"]["faults"] == {fault[5:]: 1}


@pytest.mark.parametrize("fault", ["rate_429", "rate_500", "rate_529"])
def test_our_client_absorbs_transient_errors(emulator: RunningEmulator, fault: str) -> None:
    # "*" gives every endpoint its own budget of two faults.
    emulator.configure(
        faults={"*": {fault: 1.0, "retry_after": 0.01, "max_count": 2}},
    )
    sleeps: list[float] = []
    with _client(emulator, sleeps) as client:
        batch = client.create(requests(2))
        assert client.retrieve(batch.id).id == batch.id
    assert len(sleeps) == 4
    if fault != "rate_500":
        assert sleeps == [0.01] * 4
    assert emulator.admin.batches_created() == 1
    assert emulator.admin.create_calls() == 1  # the faulted calls never reached the handler
    assert emulator.admin.calls("create") == 3


def test_too_many_faults_surface(emulator: RunningEmulator) -> None:
    emulator.configure(faults={"retrieve": {"rate_529": 1.0, "retry_after": 0.01}})
    sleeps: list[float] = []
    with _client(emulator, sleeps, max_retries=3) as client:
        batch = client.create(requests(1))
        with pytest.raises(OverloadedError) as info:
            client.retrieve(batch.id)
    assert info.value.status_code == 529
    assert len(sleeps) == 3
    emulator.configure(faults={})
    with _client(emulator, sleeps) as client:
        assert client.retrieve(batch.id).id == batch.id


def test_the_sdk_absorbs_overload(emulator: RunningEmulator) -> None:
    emulator.configure(faults={"create": {"rate_529": 1.0, "retry_after": 0.01, "max_count": 2}})
    with anthropic.Anthropic(api_key=emulator.api_key, base_url=emulator.base_url) as sdk:
        batch = sdk.messages.batches.create(requests=requests(1))
    assert batch.processing_status == "in_progress"
    assert emulator.admin.batches_created() == 1


def test_dropped_connection(emulator: RunningEmulator) -> None:
    emulator.configure(faults={"list": {"rate_drop": 1.0, "max_count": 1}})
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(
            f"{emulator.base_url}/v1/messages/batches",
            headers={"x-api-key": emulator.api_key, "anthropic-version": "2023-06-01"},
        )
    emulator.configure(faults={"list": {"rate_drop": 1.0, "max_count": 1}})
    sleeps: list[float] = []
    with _client(emulator, sleeps) as client:
        assert list(client.list()) == []
    assert len(sleeps) == 1


def test_answer_lost_after_the_batch_was_created(emulator: RunningEmulator) -> None:
    # The nastiest case for idempotency: the batch exists but the client never heard of it.
    emulator.configure(faults={"create": {"rate_drop_after": 1.0, "max_count": 1}})
    with _client(emulator, [], max_retries=0) as client:
        with pytest.raises(APIConnectionError):
            client.create(requests(3))
        orphans = list(client.list())
    assert len(orphans) == 1
    assert orphans[0].request_counts.total == 3
    assert emulator.admin.batches_created() == 1


def test_slow_answers(emulator: RunningEmulator) -> None:
    emulator.configure(faults={"list": {"rate_slow": 1.0, "slow_seconds": 1.0}})
    with (
        _client(emulator, [], max_retries=0, timeout=0.2) as client,
        pytest.raises(APITimeoutError),
    ):
        client.list_page()
    emulator.configure(faults={})
    with _client(emulator, [], timeout=5) as client:
        assert client.list_page().data == []


def test_fault_budget_per_endpoint(emulator: RunningEmulator) -> None:
    emulator.configure(faults={"retrieve": {"rate_500": 1.0, "max_count": 1}})
    with _client(emulator, [], max_retries=0) as client:
        batch = client.create(requests(1))
        with pytest.raises(InternalServerError):
            client.retrieve(batch.id)
        assert client.retrieve(batch.id).id == batch.id
        assert client.retrieve(batch.id).id == batch.id


def test_errored_results_by_error_type(emulator: RunningEmulator) -> None:
    emulator.configure(result_errors={"overloaded_error": 0.3, "api_error": 0.2})
    with _client(emulator, []) as client:
        batch = client.create(requests(300))
        emulator.wait_ended(batch.id)
        types: Counter[str] = Counter()
        for line in client.results(batch.id):
            if line.result.type == "errored":
                types[line.result.error.error.type] += 1
            else:
                types[line.result.type] += 1
    assert sum(types.values()) == 300
    assert 40 <= types["overloaded_error"] <= 140
    assert 20 <= types["api_error"] <= 100
    assert types["succeeded"] == 300 - types["overloaded_error"] - types["api_error"]

    emulator.configure(result_errors={"timeout_error": 1.0})
    with _client(emulator, []) as client:
        batch = client.create(requests(5))
        emulator.wait_ended(batch.id)
        assert client.retrieve(batch.id).request_counts.errored == 5


def test_faults_leave_the_admin_view_alone(emulator: RunningEmulator) -> None:
    emulator.configure(faults={"*": {"rate_500": 1.0}})
    assert emulator.admin.stats()["workspaces"]["default"]["batches_created"] == 0


def test_requests_per_minute(emulator: RunningEmulator) -> None:
    emulator.configure(requests_per_minute=3)
    url = f"{emulator.base_url}/v1/messages/batches"
    headers = {"x-api-key": emulator.api_key, "anthropic-version": "2023-06-01"}
    assert [httpx.get(url, headers=headers).status_code for _ in range(3)] == [200] * 3
    limited = httpx.get(url, headers=headers)
    assert limited.status_code == 429
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= float(limited.headers["retry-after"]) <= 60
    emulator.configure(requests_per_minute=None)
    assert httpx.get(url, headers=headers).status_code == 200
