from __future__ import annotations

import json

import pytest

from airflow_batches.api import Client
from airflow_batches.emulator.testing import RunningEmulator
from tests.triggers._support import CONN


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def client(emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch) -> Client:
    """A client of the emulator, whose connection the triggers find as ``CONN``."""
    conn = {"conn_type": "message_batches", "host": emulator.base_url, "password": emulator.api_key}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN.upper()}", json.dumps(conn))
    return Client(api_key=emulator.api_key, base_url=emulator.base_url)
