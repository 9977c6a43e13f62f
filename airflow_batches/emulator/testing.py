"""Serve the emulator for tests: a real uvicorn server on 127.0.0.1, plus pytest fixtures.

Enable the fixtures with ``pytest_plugins = ["airflow_batches.emulator.testing"]``::

    def test_something(emulator):
        client = Client(api_key=emulator.api_key, base_url=emulator.base_url)
        ...
        emulator.advance_clock(25 * 3600)
        assert emulator.admin.batches_created() == 1

The server runs in a thread of the test process and listens on loopback, so subprocesses
(``airflow dags test``) reach it at ``base_url`` too.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from airflow_batches.emulator.app import ADMIN_PREFIX, create_app
from airflow_batches.emulator.config import EmulatorConfig

__all__ = [
    "AdminClient",
    "RunningEmulator",
    "emulator",
    "emulator_factory",
    "serve_emulator",
]

_START_TIMEOUT = 15.0


class _QuietDrops(logging.Filter):
    # A dropped connection is a fault the test asked for, not a server error.
    def filter(self, record: logging.LogRecord) -> bool:
        return "without completing response" not in record.getMessage()


logging.getLogger("uvicorn.error").addFilter(_QuietDrops())


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    sock.set_inheritable(False)
    return sock


class _ServerThread:
    """One uvicorn server in a daemon thread."""

    def __init__(self, config: EmulatorConfig, port: int) -> None:
        self.sock = _listen(port)
        self.port: int = self.sock.getsockname()[1]
        self.app = create_app(config)
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                lifespan="on",
                log_level="warning",
                access_log=False,
                timeout_graceful_shutdown=2,
                date_header=False,  # the app sends its own clock's
            )
        )
        self.thread = threading.Thread(
            target=self.server.run,
            kwargs={"sockets": [self.sock]},
            name=f"batches-emulator-{self.port}",
            daemon=True,
        )

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the emulator did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        with contextlib.suppress(OSError):
            self.sock.close()


class AdminClient:
    """The admin view (``/_emulator/...``) as plain Python values."""

    def __init__(self, base_url: str) -> None:
        self._base = base_url + ADMIN_PREFIX

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, self._base + path, json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/stats")
        return result

    def workspace(self, workspace: str = "default") -> dict[str, int]:
        """batches_created, create_calls, requests_received, batches_live."""
        result: dict[str, int] = self.stats()["workspaces"].get(workspace, {})
        return result

    def batches_created(self, workspace: str = "default") -> int:
        return int(self.workspace(workspace).get("batches_created", 0))

    def create_calls(self, workspace: str = "default") -> int:
        return int(self.workspace(workspace).get("create_calls", 0))

    def requests_received(self, workspace: str = "default") -> int:
        return int(self.workspace(workspace).get("requests_received", 0))

    def calls(self, endpoint: str) -> int:
        """Calls of one endpoint (create, retrieve, list, cancel, delete, results)."""
        return int(self.stats()["endpoints"][endpoint]["calls"])

    def batches(self, workspace: str | None = None) -> list[dict[str, Any]]:
        """Every live batch with its true counts, oldest first."""
        path = "/batches" + (f"?workspace={workspace}" if workspace else "")
        result: list[dict[str, Any]] = self._call("GET", path)["data"]
        return result

    def batch(self, batch_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/batches/{batch_id}")
        return result

    def requests(self, batch_id: str) -> list[dict[str, Any]]:
        """The request items of a batch exactly as received, in input order."""
        import json

        with httpx.stream("GET", f"{self._base}/batches/{batch_id}/requests", timeout=60) as r:
            r.raise_for_status()
            return [json.loads(line) for line in r.iter_lines() if line]

    def config(self) -> dict[str, Any]:
        """The settings, API keys shown as ``"<redacted>"``."""
        result: dict[str, Any] = self._call("GET", "/config")
        return result

    def clock(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/clock")
        return result

    def reset(self) -> None:
        # A state change: the admin view wants a JSON body (see admin_guard).
        self._call("POST", "/reset", {})


class RunningEmulator:
    """A served emulator. ``base_url`` and ``api_key`` are what a client needs."""

    def __init__(self, config: EmulatorConfig, port: int = 0) -> None:
        self.config = config
        self._server: _ServerThread | None = _ServerThread(config, port)
        self._server.start()
        self.port = self._server.port
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.admin = AdminClient(self.base_url)

    @property
    def api_key(self) -> str:
        """A key of workspace ``default`` (or of the first workspace)."""
        return self.config.default_key

    @property
    def keys(self) -> dict[str, str]:
        """Workspace name -> its first key."""
        return {ws: keys[0] for ws, keys in self.config.workspaces.items()}

    @property
    def data_dir(self) -> Path:
        assert self.config.data_dir is not None
        return self.config.data_dir

    @property
    def app(self) -> Any:
        """The running ASGI app (``app.state.emulator`` is the live state)."""
        assert self._server is not None
        return self._server.app

    def configure(self, **overrides: Any) -> EmulatorConfig:
        """Change settings at run time (faults, latency, time_scale, paused, ...).

        Nested mappings merge key by key; an empty mapping replaces (``faults={}`` clears).
        ``responder`` cannot change at run time (``ValueError``): give it to the factory.
        """
        response = httpx.patch(f"{self.base_url}{ADMIN_PREFIX}/config", json=overrides)
        if response.status_code != 200:
            raise ValueError(response.json()["error"]["message"])
        # The admin view never shows keys: keep the ones this side knows.
        keys = self.config.updated(overrides).workspaces
        self.config = EmulatorConfig.model_validate({**response.json(), "workspaces": keys})
        return self.config

    def advance_clock(self, seconds: float) -> datetime:
        """Move emulated time forward; expiry and archiving are applied before it returns."""
        response = httpx.post(
            f"{self.base_url}{ADMIN_PREFIX}/clock/advance", json={"seconds": seconds}
        )
        response.raise_for_status()
        return datetime.fromisoformat(response.json()["now"])

    def wait_until(
        self, predicate: Callable[[], bool], *, timeout: float = 10.0, interval: float = 0.02
    ) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            time.sleep(interval)

    def wait_ended(self, batch_id: str, *, timeout: float = 10.0) -> dict[str, Any]:
        """Poll the admin view until the batch has ended; return its admin record."""
        holder: dict[str, Any] = {}

        def ended() -> bool:
            holder.update(self.admin.batch(batch_id))
            return bool(holder["status"] == "ended")

        self.wait_until(ended, timeout=timeout)
        return holder

    def wait_processed(self, batch_id: str, count: int, *, timeout: float = 10.0) -> None:
        """Poll until at least ``count`` requests of the batch have been answered."""
        self.wait_until(
            lambda: int(self.admin.batch(batch_id)["processed"]) >= count, timeout=timeout
        )

    def restart(self) -> None:
        """Stop, then serve again on the same port and data dir (a persistence test)."""
        self.stop()
        self._server = _ServerThread(self.config, self.port)
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


@contextlib.contextmanager
def serve_emulator(
    config: EmulatorConfig | None = None,
    *,
    data_dir: str | Path | None = None,
    port: int = 0,
) -> Iterator[RunningEmulator]:
    """Serve the emulator on 127.0.0.1 (a free port unless ``port``) until the block ends.

    ``data_dir`` overrides the config's; without either, a temporary directory is used and
    removed afterwards.
    """
    config = config or EmulatorConfig()
    temporary: str | None = None
    if data_dir is None and config.data_dir is None:
        temporary = tempfile.mkdtemp(prefix="batches-emulator-")
        data_dir = temporary
    if data_dir is not None:
        config = config.model_copy(update={"data_dir": Path(data_dir)})
    running = RunningEmulator(config, port)
    try:
        yield running
    finally:
        running.stop()
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[RunningEmulator]:
    """A fresh emulator (default config, own data dir) for one test."""
    with serve_emulator(data_dir=tmp_path / "emulator") as running:
        yield running


@pytest.fixture
def emulator_factory(tmp_path: Path) -> Iterator[Callable[..., RunningEmulator]]:
    """Build emulators with a custom config: ``emulator_factory(config, **overrides)``."""
    with contextlib.ExitStack() as stack:
        counter = 0

        def make(config: EmulatorConfig | None = None, **overrides: Any) -> RunningEmulator:
            nonlocal counter
            counter += 1
            base = config or EmulatorConfig()
            if overrides:
                base = base.updated(overrides)
            data_dir = base.data_dir or tmp_path / f"emulator-{counter}"
            return stack.enter_context(serve_emulator(base, data_dir=data_dir))

        yield make
