"""A local sink for benchmarks: reads and drops a create body, and can serve a results file.

    python bench/sink.py [--port 0] [--results results.jsonl]

Prints ``listening http://127.0.0.1:PORT`` once it accepts connections. It speaks just enough
of the Message Batches API for our client, the official SDK and curl to finish their calls:

- ``POST /v1/messages/batches``: reads the whole body (Content-Length or chunked), keeps only
  its size, and answers a new batch (``in_progress``).
- ``GET /v1/messages/batches/{id}``: that batch, ended, with its ``results_url`` (and as many
  succeeded requests as the results file has lines).
- ``GET /v1/messages/batches/{id}/results``: the ``--results`` file, streamed as it is.
- ``GET /v1/messages/batches``: an empty page.
- ``GET /_sink/bodies``: the sizes of the create bodies received so far (to check that every
  contender sent what it should).

Standard library only, so that it costs the contenders nothing but the loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CHUNK = 1 << 20
_BATCH = re.compile(r"^/v1/messages/batches/([A-Za-z0-9_-]+)(/results)?$")


class Sink(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, results: Path | None) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.results = results
        # An ended batch says how many requests it holds, as the API's do: the client stops a
        # results body that runs past its batch's request count.
        self.result_lines = _count_lines(results) if results is not None else 0
        self.bodies: list[int] = []
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def new_batch(self, size: int) -> dict[str, Any]:
        with self.lock:
            self.bodies.append(size)
            number = len(self.bodies)
        return self.batch(f"msgbatch_sink{number:06d}", ended=False)

    def batch(self, batch_id: str, *, ended: bool) -> dict[str, Any]:
        now = datetime.now(UTC)
        return {
            "id": batch_id,
            "type": "message_batch",
            "processing_status": "ended" if ended else "in_progress",
            "request_counts": {
                **dict.fromkeys(("processing", "succeeded", "errored", "canceled", "expired"), 0),
                "succeeded": self.result_lines if ended else 0,
            },
            "created_at": now.isoformat(),
            "expires_at": (now + timedelta(hours=24)).isoformat(),
            "ended_at": now.isoformat() if ended else None,
            "cancel_initiated_at": None,
            "archived_at": None,
            "results_url": f"{self.base_url}/v1/messages/batches/{batch_id}/results"
            if ended
            else None,
        }


def _count_lines(path: Path) -> int:
    with path.open("rb") as stream:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: stream.read(CHUNK), b""))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Sink

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        if self.path.split("?")[0] != "/v1/messages/batches":
            self._json(404, {"type": "error", "error": {"type": "not_found_error"}})
            return
        size = self._drain()
        self._json(200, self.server.new_batch(size))

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/_sink/bodies":
            self._json(200, {"bodies": self.server.bodies})
            return
        if path == "/v1/messages/batches":
            self._json(200, {"data": [], "has_more": False, "first_id": None, "last_id": None})
            return
        found = _BATCH.match(path)
        if not found:
            self._json(404, {"type": "error", "error": {"type": "not_found_error"}})
        elif not found.group(2):
            self._json(200, self.server.batch(found.group(1), ended=True))
        else:
            self._results()

    def _results(self) -> None:
        results = self.server.results
        if results is None:
            self._json(404, {"type": "error", "error": {"type": "not_found_error"}})
            return
        self.send_response(200)
        self.send_header("content-type", "application/binary")
        self.send_header("content-length", str(results.stat().st_size))
        self.end_headers()
        with results.open("rb") as stream:
            while data := stream.read(CHUNK):
                self.wfile.write(data)

    def _drain(self) -> int:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            size = 0
            while True:
                length = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if length == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return size
                size += self._skip(length)
                self.rfile.readline()
        return self._skip(int(self.headers.get("content-length", "0")))

    def _skip(self, length: int) -> int:
        left = length
        while left > 0:
            data = self.rfile.read(min(CHUNK, left))
            if not data:
                break
            left -= len(data)
        return length - left

    def _json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--results", type=Path)
    args = parser.parse_args()
    sink = Sink(args.port, args.results)
    print(f"listening {sink.base_url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        sink.serve_forever()


if __name__ == "__main__":
    main()
