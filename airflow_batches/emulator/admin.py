"""The admin view under ``/_emulator``: what arrived, runtime settings, the clock.

No real client ever calls these paths. They need no API key, but every request first passes
``admin_guard`` (no other site's page gets in), every body is bounded (``bodies``), no answer
shows an API key, and no request can name code to import (the responder is set at start).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from airflow_batches.emulator.bodies import ADMIN_MAX_BODY_BYTES, read_body
from airflow_batches.emulator.config import EmulatorConfig
from airflow_batches.emulator.errors import invalid_request, json_response, not_found
from airflow_batches.emulator.intake import RequestIndex
from airflow_batches.emulator.service import Emulator, emulator_of
from airflow_batches.emulator.store import BatchRecord

REDACTED_KEY = "<redacted>"
"""What the admin view shows in place of each API key."""

START_ONLY = ("responder", "allowed_hosts", "admin_hosts")
"""Settings the admin view refuses to change: they name code to import, or who may call it."""


def _json(data: Any) -> Response:
    return json_response(json.dumps(data, default=str))


def config_view(config: EmulatorConfig) -> Response:
    """The config as JSON, each workspace's keys replaced by ``REDACTED_KEY``."""
    data = config.model_dump(mode="json")
    data["workspaces"] = {
        name: [REDACTED_KEY] * len(keys) for name, keys in config.workspaces.items()
    }
    return _json(data)


async def _body(request: Request) -> dict[str, Any]:
    raw = await read_body(request, ADMIN_MAX_BODY_BYTES, "an admin request, 1 MiB")
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise invalid_request("the body must be a JSON object") from None
    if not isinstance(data, dict):
        raise invalid_request("the body must be a JSON object")
    return data


def _record(emulator: Emulator, request: Request) -> BatchRecord:
    batch_id = request.path_params["batch_id"]
    record = emulator.store.get(batch_id)
    if record is None:
        raise not_found(f"Message batch {batch_id!r} not found")
    return record


async def health(request: Request) -> Response:
    return _json({"ok": True})


async def stats(request: Request) -> Response:
    return _json(emulator_of(request).stats())


async def list_batches(request: Request) -> Response:
    emulator = emulator_of(request)
    workspace = request.query_params.get("workspace")
    data = [
        emulator.admin_batch(r)
        for r in sorted(emulator.store.all(), key=lambda r: r.seq)
        if workspace is None or r.workspace == workspace
    ]
    return _json({"data": data})


async def get_batch(request: Request) -> Response:
    emulator = emulator_of(request)
    return _json(emulator.admin_batch(_record(emulator, request)))


async def batch_requests(request: Request) -> Response:
    """The request items of a batch as received, one JSON object a line, in input order."""
    emulator = emulator_of(request)
    record = _record(emulator, request)
    files = emulator.store.files(record.id)
    index = RequestIndex.load(files)
    fd = os.open(files.body, os.O_RDONLY)

    async def lines() -> AsyncIterator[bytes]:
        try:
            for i in range(len(index)):
                offset, length = index[i]
                item = os.pread(fd, length, offset)
                if b"\n" in item or b"\r" in item:
                    # A pretty-printed body: re-encode so that one item stays one line.
                    item = json.dumps(json.loads(item), ensure_ascii=False).encode()
                yield item + b"\n"
        finally:
            os.close(fd)

    return StreamingResponse(lines(), media_type="application/x-jsonl")


async def get_config(request: Request) -> Response:
    return config_view(emulator_of(request).config)


def _refuse_start_only(overrides: dict[str, Any]) -> None:
    named = [name for name in START_ONLY if name in overrides]
    if named:
        raise invalid_request(
            f"{', '.join(named)}: cannot be set through the admin view; set it when starting "
            "the emulator (--responder, --set, or the --config file) and restart"
        )
    for name, keys in (overrides.get("workspaces") or {}).items():
        if isinstance(keys, list) and REDACTED_KEY in keys:
            raise invalid_request(
                f"workspaces.{name}: {REDACTED_KEY!r} is what the admin view shows in place of "
                "a key; send the keys themselves"
            )


async def update_config(request: Request) -> Response:
    emulator = emulator_of(request)
    overrides = await _body(request)
    _refuse_start_only(overrides)
    try:
        config = emulator.update_config(overrides)
    except ValidationError as exc:
        raise invalid_request(
            "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                for e in exc.errors(include_url=False)
            )
        ) from None
    return config_view(config)


def _clock_view(emulator: Emulator) -> dict[str, Any]:
    return {
        "now": emulator.clock.now_datetime().isoformat(),
        "epoch": emulator.clock.now(),
        "time_scale": emulator.clock.scale,
    }


async def get_clock(request: Request) -> Response:
    return _json(_clock_view(emulator_of(request)))


async def advance_clock(request: Request) -> Response:
    emulator = emulator_of(request)
    body = await _body(request)
    seconds = body.get("seconds", 0)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise invalid_request("seconds: a number >= 0 is required")
    emulator.clock.advance(float(seconds))
    # Expiry and archiving happen before the answer, so a test can assert right after.
    emulator.engine.tick()
    return _json(_clock_view(emulator))


async def reset(request: Request) -> Response:
    emulator = emulator_of(request)
    emulator.reset()
    return _json({"ok": True})


routes = [
    Route("/health", health, methods=["GET"]),
    Route("/stats", stats, methods=["GET"]),
    Route("/batches", list_batches, methods=["GET"]),
    Route("/batches/{batch_id}", get_batch, methods=["GET"]),
    Route("/batches/{batch_id}/requests", batch_requests, methods=["GET"]),
    Route("/config", get_config, methods=["GET"]),
    Route("/config", update_config, methods=["PATCH", "POST"]),
    Route("/clock", get_clock, methods=["GET"]),
    Route("/clock/advance", advance_clock, methods=["POST"]),
    Route("/reset", reset, methods=["POST"]),
]
