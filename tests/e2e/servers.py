"""The live stacks' outside world as processes of their own: S3 (moto) and the emulator.

Each runs in its own process (its own GIL: the test process only watches), listens on
127.0.0.1 on a free port and stops by process id (``scripts/processes.py``).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from airflow_batches.emulator.app import ADMIN_PREFIX
from airflow_batches.emulator.testing import AdminClient
from scripts.processes import free_port, spawn, stop, wait_for_port

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0
S3_REGION = "us-east-1"


class MotoS3:
    """moto's S3 server; ``conn`` is an Airflow ``aws`` connection (JSON) pointing at it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = 0
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoS3:
        self.port = free_port()
        binary = Path(sys.executable).with_name("moto_server")
        self.popen = spawn(
            [str(binary), "-H", "127.0.0.1", "-p", str(self.port)],
            log_path=self.root / "moto.log",
            cwd=self.root,
        )
        wait_for_port(self.port, timeout=START_TIMEOUT, check=self.popen)
        return self

    def stop(self) -> None:
        if self.popen is not None:
            stop([self.popen], grace=5.0)

    def conn(self) -> str:
        return json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": self.endpoint, "region_name": S3_REGION},
            }
        )

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name=S3_REGION,
        )

    def objects(self) -> Iterator[tuple[str, str, bytes]]:
        """``(bucket, key, content)`` of every object in every bucket."""
        client = self.client()
        for bucket in client.list_buckets().get("Buckets", []):
            name = bucket["Name"]
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
                for item in page.get("Contents", []):
                    body = client.get_object(Bucket=name, Key=item["Key"])["Body"].read()
                    yield name, item["Key"], body


class EmulatorServer:
    """The emulator through its CLI, in a process of its own, on a key made for this run.

    ``config`` holds ``EmulatorConfig`` fields; the repository root is on its ``PYTHONPATH``
    so a ``responder`` may live under ``tests/``.
    """

    def __init__(self, root: Path, config: Mapping[str, Any] | None = None) -> None:
        self.root = root
        # Long and unique, so a search for it in logs and rows cannot match anything else.
        self.api_key = "sk-ant-e2e-" + secrets.token_hex(24)
        self.config = {"workspaces": {"default": [self.api_key]}, **(config or {})}
        self.port = 0
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin(self) -> AdminClient:
        return AdminClient(self.base_url)

    @property
    def log_path(self) -> Path:
        # The emulator is the API's side: its log names its own keys and is no Airflow log.
        return self.root / "emulator.log"

    def start(self) -> EmulatorServer:
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config_file = self.root / "emulator.json"
        config_file.write_text(json.dumps(self.config))
        self.popen = spawn(
            [
                sys.executable,
                "-m",
                "airflow_batches.emulator",
                "--config",
                str(config_file),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.root / "data"),
                "--log-level",
                "warning",
            ],
            log_path=self.log_path,
            cwd=REPO,
            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + START_TIMEOUT
        wait_for_port(self.port, timeout=START_TIMEOUT, check=self.popen)
        while True:
            try:
                httpx.get(f"{self.base_url}{ADMIN_PREFIX}/health", timeout=2).raise_for_status()
                return self
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def configure(self, **overrides: Any) -> dict[str, Any]:
        """Change settings at run time; nested mappings merge (``faults={}`` clears)."""
        response = httpx.patch(f"{self.base_url}{ADMIN_PREFIX}/config", json=overrides, timeout=30)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def connection(self) -> str:
        """The Airflow connection (JSON) of the Message Batches API served here."""
        return json.dumps(
            {"conn_type": "message_batches", "host": self.base_url, "password": self.api_key}
        )

    def stop(self) -> None:
        if self.popen is not None:
            stop([self.popen], grace=10.0)
