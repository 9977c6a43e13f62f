"""The body scanner on its own, the config model, the CLI, and the app in process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_batches.api import AsyncClient
from airflow_batches.emulator import EmulatorConfig, create_app
from airflow_batches.emulator.cli import _parser, build_config
from airflow_batches.emulator.errors import APIError
from airflow_batches.emulator.intake import RequestIndex, scan_body
from airflow_batches.emulator.store import BatchFiles
from tests.emulator.conftest import request

pytestmark = pytest.mark.anyio


def _scan(tmp_path: Path, body: bytes, max_requests: int = 100) -> tuple[int, BatchFiles]:
    files = BatchFiles(tmp_path)
    files.body.write_bytes(body)
    count = scan_body(files, max_requests=max_requests, too_many_error="invalid_request_error")
    return count, files


def test_the_index_points_at_each_item_exactly(tmp_path: Path) -> None:
    items = [request("a", "\u00e9t\u00e9"), request("b", "x" * 3_000_000), request("c")]
    body = '{ \n"requests" : [\n' + " ,\n".join(json.dumps(i) for i in items) + "\n]\n}\n"
    count, files = _scan(tmp_path, body.encode())
    assert count == 3
    index = RequestIndex.load(files)
    raw = files.body.read_bytes()
    for i, item in enumerate(items):
        offset, length = index[i]
        assert json.loads(raw[offset : offset + length]) == item
    assert files.ids.read_text().split() == ["a", "b", "c"]


def test_scan_errors(tmp_path: Path) -> None:
    too_many = json.dumps({"requests": [request(f"r{i}") for i in range(4)]}).encode()
    with pytest.raises(APIError, match="at most 3") as info:
        _scan(tmp_path, too_many, max_requests=3)
    assert info.value.status == 400
    with pytest.raises(APIError, match="not valid JSON"):
        _scan(tmp_path, b'{"requests": [{"custom_id": "a", "params": {}')


def test_config_files_and_overrides(tmp_path: Path) -> None:
    toml = tmp_path / "emulator.toml"
    toml.write_text(
        """
port = 9000
time_scale = 60
[workspaces]
default = ["k1"]
team = ["k2", "k3"]
[faults.create]
rate_529 = 0.5
[result_errors]
overloaded_error = 0.1
"""
    )
    config = EmulatorConfig.load(toml)
    assert config.port == 9000
    assert config.workspaces["team"] == ["k2", "k3"]
    assert config.faults["create"].rate_529 == 0.5
    assert config.default_key == "k1"
    as_json = tmp_path / "emulator.json"
    as_json.write_text(config.model_dump_json())
    assert EmulatorConfig.load(as_json) == config

    updated = config.updated({"faults": {"create": {"rate_500": 0.1}}, "latency": 0.5})
    assert updated.faults["create"].rate_529 == 0.5
    assert updated.faults["create"].rate_500 == 0.1
    assert config.updated({"faults": {}}).faults == {}
    with pytest.raises(ValueError, match="rate_529"):
        config.updated({"faults": {"create": {"rate_529": 2}}})
    with pytest.raises(ValueError, match="unknown"):
        EmulatorConfig.model_validate({"unknown": 1})

    args = _parser().parse_args(
        [
            "--config",
            str(toml),
            "--port",
            "0",
            "--workspace",
            "solo=s1,s2",
            "--set",
            "faults.list.rate_429=0.2",
            "--set",
            "delete_unfinished=allow",
        ]
    )
    merged = build_config(args)
    assert merged.port == 0
    assert merged.time_scale == 60
    assert merged.workspaces == {"solo": ["s1", "s2"]}
    assert merged.faults["list"].rate_429 == 0.2
    assert merged.faults["create"].rate_529 == 0.5
    assert merged.delete_unfinished == "allow"


def test_runtime_config_rejects_fixed_and_invalid_fields(emulator: Any) -> None:
    with pytest.raises(ValueError, match="port"):
        emulator.configure(port=1)
    with pytest.raises(ValueError, match="workers"):
        emulator.configure(workers=0)
    assert emulator.configure(workers=2).workers == 2


def test_the_command_line_serves_and_prints_what_to_copy(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_batches.emulator",
            "--port",
            "0",
            "--data-dir",
            str(tmp_path / "data"),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        printed: dict[str, str] = {}
        for line in process.stdout:
            name, _, value = line.partition(":")
            printed[name.strip()] = value.strip()
            if name.strip() == "admin":
                break
        base_url = printed["base URL"]
        assert printed["API key"] == "emulator-key"
        health = httpx.get(base_url + "/_emulator/health")
        assert health.json() == {"ok": True}
        listed = httpx.get(
            base_url + "/v1/messages/batches",
            headers={"x-api-key": "emulator-key", "anthropic-version": "2023-06-01"},
        )
        assert listed.json()["data"] == []
    finally:
        process.terminate()
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert process.wait(timeout=20) in (0, -15)
    assert (tmp_path / "data" / "emulator.sqlite3").exists()


def test_the_console_script_delegates_to_the_emulator_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "airflow_batches.cli", "emulator", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--data-dir" in done.stdout
    assert "--time-scale" in done.stdout


async def test_in_process_with_asgi_transport(tmp_path: Path) -> None:
    app = create_app(EmulatorConfig(data_dir=tmp_path))
    transport = httpx.ASGITransport(app=app)
    try:
        async with AsyncClient(
            api_key="emulator-key", base_url="http://emulator.test", transport=transport
        ) as client:
            batch = await client.create([request("a"), request("b")])
            for _ in range(500):
                batch = await client.retrieve(batch.id)
                if batch.is_ended:
                    break
                await _pause()
            assert batch.results_url == (
                f"http://emulator.test/v1/messages/batches/{batch.id}/results"
            )
            ids = sorted([line.custom_id async for line in client.results(batch)])
            assert ids == ["a", "b"]
    finally:
        await app.state.emulator.stop()


async def _pause() -> None:
    import asyncio

    await asyncio.sleep(0.01)


def test_the_emulator_imports_nothing_from_airflow() -> None:
    code = (
        "import sys, airflow_batches.emulator.app, airflow_batches.emulator.cli; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'airflow', 'anthropic'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
