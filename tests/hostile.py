"""A hostile results server: a real HTTP server on 127.0.0.1 that serves the bytes a test
chooses, in the chunks it chooses, and cuts the connection where it chooses.

It answers what a fetch asks: ``GET /v1/messages/batches/{id}`` (an ended batch of the given
request count) and ``GET {results_url}`` (the body). Everything a flaky proxy or a grown API can
put in a results body can be served byte for byte: blank lines, CRLF, replays, invalid UTF-8,
unknown result types, lines split across chunks in the middle of a UTF-8 character.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

API_KEY = "hostile-key"


@dataclass
class Body:
    data: bytes
    request_count: int
    chunks: Sequence[int] = (7,)
    """Chunk sizes, cycled: odd sizes split lines and UTF-8 characters anywhere."""
    cut_at: list[int] = field(default_factory=list)
    """Byte offsets at which the next downloads are cut (one offset per download)."""
    fail_with: list[int] = field(default_factory=list)
    """Status codes the next downloads answer before the body is sent (529, 500, 429, ...)."""
    downloads: int = 0


class HostileServer:
    def __init__(self) -> None:
        self.bodies: dict[str, Body] = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        app = Starlette(
            routes=[
                Route("/v1/messages/batches/{batch_id}", self.retrieve),
                Route("/v1/messages/batches/{batch_id}/results", self.results),
            ]
        )
        self.server = uvicorn.Server(
            uvicorn.Config(app, log_level="critical", access_log=False, lifespan="off")
        )
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serve(self, batch_id: str, data: bytes, request_count: int, **kw: Any) -> Body:
        body = self.bodies[batch_id] = Body(data, request_count, **kw)
        return body

    def batch_json(self, batch_id: str) -> dict[str, Any]:
        n = self.bodies[batch_id].request_count
        return {
            "id": batch_id,
            "type": "message_batch",
            "processing_status": "ended",
            "request_counts": {
                "processing": 0,
                "succeeded": n,
                "errored": 0,
                "canceled": 0,
                "expired": 0,
            },
            "created_at": "2026-12-01T10:00:00Z",
            "expires_at": "2026-12-02T10:00:00Z",
            "ended_at": "2026-12-01T10:05:00Z",
            "cancel_initiated_at": None,
            "archived_at": None,
            "results_url": f"{self.base_url}/v1/messages/batches/{batch_id}/results",
        }

    async def retrieve(self, request: Request) -> Response:
        batch_id = request.path_params["batch_id"]
        if batch_id not in self.bodies:
            error = {"type": "not_found_error", "message": batch_id}
            return JSONResponse({"type": "error", "error": error}, status_code=404)
        return JSONResponse(self.batch_json(batch_id))

    async def results(self, request: Request) -> Response:
        body = self.bodies[request.path_params["batch_id"]]
        body.downloads += 1
        if body.fail_with:
            status = body.fail_with.pop(0)
            error = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
            return JSONResponse(error, status_code=status, headers={"retry-after": "0"})
        cut = body.cut_at.pop(0) if body.cut_at else None

        async def stream() -> AsyncIterator[bytes]:
            sent, i = 0, 0
            while sent < len(body.data):
                size = body.chunks[i % len(body.chunks)]
                i += 1
                end = min(sent + size, len(body.data))
                if cut is not None and end >= cut:
                    if cut > sent:
                        yield body.data[sent:cut]
                    await asyncio.sleep(0.01)
                    raise ConnectionAbortedError("cut by the test")
                yield body.data[sent:end]
                sent = end

        return StreamingResponse(stream(), media_type="application/x-jsonl")

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the hostile server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        with contextlib.suppress(OSError):
            self.sock.close()


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    server = HostileServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
