"""A lying API server: a real HTTP server on 127.0.0.1 that answers what a compromised proxy,
a gateway or a mistaken ``host`` could, and writes down every request it gets.

It creates batches under an id the test chooses (path syntax included), names a
``results_url`` on whatever origin the test says, and serves results compressed (``gzip`` or
``deflate``, a small body that inflates to a huge one) or without end. ``seen`` records each
request's method, path and the ``x-api-key`` it carried, so a test can prove where the key
went. The emulator stays faithful to the API; lies live here.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

API_KEY = "sk-ant-lying-server-key-0d9f"
CREATED_AT = "2026-12-01T10:00:00Z"


@dataclass
class Seen:
    method: str
    path: str
    api_key: str | None


@dataclass
class Served:
    """What the server says of one batch, and the results it serves for it."""

    request_count: int
    chunks: Callable[[], Iterable[bytes]]
    """A fresh iterable of the (already encoded) body's chunks for each download."""
    encoding: str | None = None
    results_url: str | None = None
    """Where the batch says its results are; None: this server's own results path."""
    downloads: int = 0
    sent: int = 0
    """Chunks sent, over every download."""


def compress(pieces: Iterable[bytes], encoding: str) -> Iterator[bytes]:
    """``pieces`` gzip- or deflate-compressed, produced piece by piece (a bomb never sits
    inflated in the test's memory)."""
    wbits = zlib.MAX_WBITS | 16 if encoding == "gzip" else zlib.MAX_WBITS
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    for piece in pieces:
        if out := packer.compress(piece):
            yield out
    yield packer.flush()


def in_chunks(data: bytes, size: int = 4096) -> Callable[[], Iterator[bytes]]:
    return lambda: (data[i : i + size] for i in range(0, len(data), size))


@dataclass
class LyingServer:
    created_id: str = "msgbatch_01LyingServerCreatedThis0"
    """The id the create answer names."""
    batches: dict[str, Served] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        app = Starlette(
            routes=[
                Route("/v1/messages/batches", self.create_or_list, methods=["GET", "POST"]),
                Route("/v1/messages/batches/{batch_id:path}/results", self.results),
                Route("/v1/messages/batches/{batch_id:path}", self.retrieve),
            ]
        )
        config = uvicorn.Config(app, log_level="critical", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serve(self, batch_id: str, lines: Iterable[bytes] | bytes, count: int, **kw: Any) -> Served:
        """Serve ``lines`` (or a whole body) as the results of a batch of ``count`` requests."""
        body = lines if isinstance(lines, bytes) else b"".join(x + b"\n" for x in lines)
        served = self.batches[batch_id] = Served(count, in_chunks(body), **kw)
        return served

    def batch_json(self, batch_id: str, *, ended: bool = True) -> dict[str, Any]:
        served = self.batches.get(batch_id)
        n = served.request_count if served else 1
        own = f"{self.base_url}/v1/messages/batches/{batch_id}/results"
        return {
            "id": batch_id,
            "type": "message_batch",
            "processing_status": "ended" if ended else "in_progress",
            "request_counts": {
                "processing": 0 if ended else n,
                "succeeded": n if ended else 0,
                "errored": 0,
                "canceled": 0,
                "expired": 0,
            },
            "created_at": CREATED_AT,
            "expires_at": "2026-12-02T10:00:00Z",
            "ended_at": "2026-12-01T10:05:00Z" if ended else None,
            "cancel_initiated_at": None,
            "archived_at": None,
            "results_url": (served.results_url if served and served.results_url else own)
            if ended
            else None,
        }

    def _note(self, request: Request) -> None:
        self.seen.append(Seen(request.method, request.url.path, request.headers.get("x-api-key")))

    async def create_or_list(self, request: Request) -> Response:
        self._note(request)
        if request.method == "GET":
            return JSONResponse({"data": [], "has_more": False, "first_id": None, "last_id": None})
        await request.body()
        return JSONResponse(self.batch_json(self.created_id, ended=False))

    async def retrieve(self, request: Request) -> Response:
        self._note(request)
        batch_id = request.path_params["batch_id"]
        if batch_id not in self.batches:
            error = {"type": "not_found_error", "message": "no such batch"}
            return JSONResponse({"type": "error", "error": error}, status_code=404)
        return JSONResponse(self.batch_json(batch_id))

    async def results(self, request: Request) -> Response:
        self._note(request)
        served = self.batches[request.path_params["batch_id"]]
        served.downloads += 1

        async def stream() -> AsyncIterator[bytes]:
            for chunk in served.chunks():
                served.sent += 1
                yield chunk
                await asyncio.sleep(0)  # let a disconnect be seen: an endless body must end

        headers = {"content-encoding": served.encoding} if served.encoding else {}
        return StreamingResponse(stream(), media_type="application/x-jsonl", headers=headers)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the lying server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        with contextlib.suppress(OSError):
            self.sock.close()


@contextlib.contextmanager
def running(**kwargs: Any) -> Iterator[LyingServer]:
    server = LyingServer(**kwargs)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def lying() -> Iterator[LyingServer]:
    with running() as server:
        yield server


@pytest.fixture
def foreign() -> Iterator[LyingServer]:
    """Another origin (another port of 127.0.0.1): where a lying batch sends its results."""
    with running() as server:
        yield server
