"""A fast fake of the Message Batches status endpoints, for bench/triggers.py.

Serves ``N`` batches that stay in progress: retrieve (``GET /v1/messages/batches/{id}``) and
list (``GET /v1/messages/batches``: newest first, ``limit``, ``after_id``, ``before_id``), each
answer built from bytes made once at start. ``GET /_stats`` counts the calls. It is a bare ASGI
app on uvicorn, run in its own process so that its CPU is not the bench's.

    python bench/fake_batches.py --batches 1000 --port 0     # prints "PORT <n>", then serves
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import uvicorn

Scope = MutableMapping[str, Any]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
PREFIX = "/v1/messages/batches"
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def batch_id(i: int) -> str:
    return f"msgbatch_bench{i:08d}"


def batch_json(i: int) -> bytes:
    created = T0 + timedelta(seconds=i)
    return json.dumps(
        {
            "id": batch_id(i),
            "type": "message_batch",
            "processing_status": "in_progress",
            "request_counts": {
                "processing": 100,
                "succeeded": 0,
                "errored": 0,
                "canceled": 0,
                "expired": 0,
            },
            "created_at": created.isoformat().replace("+00:00", "Z"),
            "expires_at": (created + timedelta(hours=24)).isoformat().replace("+00:00", "Z"),
            "ended_at": None,
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": None,
        },
        separators=(",", ":"),
    ).encode()


class FakeBatches:
    """The ASGI app: ``n`` batches, ``batch_id(n - 1)`` the newest."""

    def __init__(self, n: int) -> None:
        self.newest_first = [batch_json(i) for i in reversed(range(n))]
        self.ids = [batch_id(i) for i in reversed(range(n))]
        self.position = {b: p for p, b in enumerate(self.ids)}
        self.by_id = dict(zip(self.ids, self.newest_first, strict=True))
        self.calls = {"list": 0, "retrieve": 0, "other": 0}

    def page(self, query: dict[str, list[str]]) -> bytes | None:
        limit = int(query.get("limit", ["20"])[0])
        if not 1 <= limit <= 1000:
            return None
        start, end = 0, len(self.ids)
        if "after_id" in query:
            start = self.position[query["after_id"][0]] + 1
        if "before_id" in query:
            end = self.position[query["before_id"][0]]
            start = max(0, end - limit)
        stop = min(start + limit, end)
        data = self.newest_first[start:stop]
        first = json.dumps(self.ids[start] if data else None)
        last = json.dumps(self.ids[stop - 1] if data else None)
        more = "true" if stop < end else "false"
        tail = f'],"has_more":{more},"first_id":{first},"last_id":{last}}}'.encode()
        return b'{"data":[' + b",".join(data) + tail

    async def __call__(self, scope: Scope, receive: Any, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        status, body = 404, b'{"type":"error","error":{"type":"not_found_error","message":"no"}}'
        if path == PREFIX:
            self.calls["list"] += 1
            page = self.page(parse_qs(scope["query_string"].decode()))
            if page is None:
                status, body = 400, b'{"type":"error","error":{"type":"invalid_request_error"}}'
            else:
                status, body = 200, page
        elif path.startswith(PREFIX + "/"):
            self.calls["retrieve"] += 1
            found = self.by_id.get(path[len(PREFIX) + 1 :])
            if found is not None:
                status, body = 200, found
        elif path == "/_stats":
            status, body = 200, json.dumps(self.calls).encode()
        else:
            self.calls["other"] += 1
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"request-id", b"req_bench"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(2048)
    config = uvicorn.Config(
        FakeBatches(args.batches),
        lifespan="off",
        access_log=False,
        log_level="warning",
        http="httptools",
        loop="uvloop",
        backlog=2048,
    )
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
