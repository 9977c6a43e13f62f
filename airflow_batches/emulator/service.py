"""The emulator's state in one object: config, store, clock, engine, faults, callers."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request

from airflow_batches.emulator.clock import Clock
from airflow_batches.emulator.config import ENDPOINTS, RUNTIME_FIXED, EmulatorConfig, Endpoint
from airflow_batches.emulator.engine import Engine
from airflow_batches.emulator.errors import APIError, invalid_request, not_found
from airflow_batches.emulator.faults import FaultInjector, RateLimiter
from airflow_batches.emulator.store import BatchRecord, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Caller:
    """Who is calling: the workspace their key selects, and the headers that matter."""

    workspace: str
    api_version: str
    betas: tuple[str, ...]


class Emulator:
    """Everything a request handler needs, reachable as ``request.app.state.emulator``."""

    def __init__(self, config: EmulatorConfig) -> None:
        if config.data_dir is None:
            config = config.model_copy(
                update={"data_dir": Path(tempfile.mkdtemp(prefix="batches-emulator-"))}
            )
        assert config.data_dir is not None
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.data_dir: Path = config.data_dir
        self.store = Store(self.data_dir)
        saved = self.store.get_meta("clock")
        # Never let emulated time run backwards across a restart (advances are kept).
        start = max(time.time(), float(saved) if saved else 0.0)
        self.clock = Clock(start, scale=config.time_scale)
        self.engine = Engine(self.store, self.clock, lambda: self.config)
        self.faults = FaultInjector(config.seed)
        self.limiter = RateLimiter()
        self.calls: dict[str, int] = Counter()
        self._start_lock: asyncio.Lock | None = None
        self._stopped = False

    # -- life ------------------------------------------------------------------------------

    async def ensure_started(self) -> None:
        """Start the engine on first use: an in-process app (httpx.ASGITransport) gets no
        lifespan events."""
        if self.engine.running or self._stopped:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if not self.engine.running:
                await self.engine.start()

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        await self.engine.stop()
        self.store.close()

    def update_config(self, overrides: dict[str, Any]) -> EmulatorConfig:
        fixed = RUNTIME_FIXED.intersection(overrides)
        if fixed:
            raise invalid_request(f"{', '.join(sorted(fixed))}: cannot change while running")
        new = self.config.updated(overrides)
        if "faults" in overrides or "seed" in overrides:
            # Setting faults again starts their budgets (max_count) afresh.
            self.faults.reset(new.seed)
        self.config = new
        self.engine.reconfigure()
        return new

    def reset(self) -> None:
        for record in list(self.store.all()):
            self.engine.drop(record)
        self.store.reset()
        self.engine.cache.clear()
        self.faults.reset(self.config.seed)
        self.limiter.reset()
        self.calls.clear()

    # -- callers ---------------------------------------------------------------------------

    def caller(self, request: Request) -> Caller:
        """Authenticate and check the version headers, as the API does on every call."""
        headers = request.headers
        key = headers.get("x-api-key")
        if not key:
            auth = headers.get("authorization", "")
            scheme, _, token = auth.partition(" ")
            if scheme.lower() == "bearer":
                key = token.strip()
        if not key:
            raise APIError("authentication_error", "x-api-key header is required")
        spaces = [ws for ws, keys in self.config.workspaces.items() if key in keys]
        if not spaces:
            raise APIError("authentication_error", "invalid x-api-key")
        workspace = spaces[0]
        wanted = headers.get("anthropic-workspace-id")
        if wanted:
            if wanted not in spaces:
                raise APIError(
                    "permission_error", f"This API key cannot act on workspace {wanted!r}"
                )
            workspace = wanted
        version = headers.get("anthropic-version")
        if not version:
            raise invalid_request("anthropic-version: header is required")
        if version not in self.config.api_versions:
            raise invalid_request(
                f"anthropic-version: {version!r} is not a valid version "
                f"(accepted: {', '.join(self.config.api_versions)})"
            )
        betas = tuple(b.strip() for b in headers.get("anthropic-beta", "").split(",") if b.strip())
        unknown = [b for b in betas if b not in self.config.betas]
        if unknown:
            raise invalid_request(
                f"Unexpected value(s) `{', '.join(unknown)}` for the `anthropic-beta` header. "
                "Please consult our documentation at docs.anthropic.com or try again without "
                "the header."
            )
        return Caller(workspace=workspace, api_version=version, betas=betas)

    def visible_batch(
        self, caller: Caller, batch_id: str, *, fresh_glitch: bool = False
    ) -> BatchRecord:
        """The caller's batch, or 404 as if it did not exist (other workspaces included)."""
        record = self.store.get(batch_id)
        if record is None or record.workspace != caller.workspace:
            raise not_found(f"Message batch {batch_id!r} not found")
        window = self.config.not_found_after_create
        if fresh_glitch and window and self.clock.now() - record.created_at < window:
            raise not_found(f"Message batch {batch_id!r} not found")
        return record

    # -- admin view ------------------------------------------------------------------------

    def count_call(self, endpoint: Endpoint) -> None:
        self.calls[endpoint] += 1

    def stats(self) -> dict[str, Any]:
        counters = self.store.counters()
        live: dict[str, int] = defaultdict(int)
        for record in self.store.all():
            live[record.workspace] += 1
        workspaces = {}
        for ws in dict.fromkeys([*self.config.workspaces, *counters]):
            values = counters.get(ws, {})
            workspaces[ws] = {
                "batches_created": values.get("batches_created", 0),
                "create_calls": values.get("create_calls", 0),
                "requests_received": values.get("requests_received", 0),
                "batches_live": live.get(ws, 0),
            }
        endpoints = {
            ep: {"calls": self.calls.get(ep, 0), "faults": self.faults.injected(ep)}
            for ep in ENDPOINTS
        }
        return {
            "workspaces": workspaces,
            "endpoints": endpoints,
            "count_tokens_calls": self.calls.get("count_tokens", 0),
            "queued_requests": self.engine.queued(),
            "now": self.clock.now_datetime().isoformat(),
        }

    def admin_batch(self, record: BatchRecord) -> dict[str, Any]:
        out = record.to_admin(self.clock.now())
        out["progress"] = self.engine.progress(record.id)
        return out


def emulator_of(request: Request) -> Emulator:
    emulator: Emulator = request.app.state.emulator
    return emulator
