"""Helpers shared by the emulator tests (the fixtures come from the testing plugin)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from airflow_batches.api import Client
from airflow_batches.emulator.testing import RunningEmulator

MODEL = "claude-sonnet-4-5"


def request(custom_id: str, text: str = "hello", **params: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 256,
        "messages": [{"role": "user", "content": text}],
    }
    body.update(params)
    return {"custom_id": custom_id, "params": body}


def requests(n: int, prefix: str = "req") -> list[dict[str, Any]]:
    return [request(f"{prefix}-{i}", f"question number {i}") for i in range(n)]


async def _no_sleep(seconds: float) -> None:
    return None


@pytest.fixture
def sdk(emulator: RunningEmulator) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        api_key=emulator.api_key, base_url=emulator.base_url, max_retries=0
    ) as client:
        yield client


@pytest.fixture
def client(emulator: RunningEmulator) -> Iterator[Client]:
    with Client(api_key=emulator.api_key, base_url=emulator.base_url, sleep=lambda _: None) as api:
        yield api
