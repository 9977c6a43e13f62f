"""The floors of ``compare.py``: the least any Python path can do for a case, checks left out.

Each moves the same bytes as ``ours`` and curl, with the fastest tools the project has, and
keeps only the work no checked path can skip. Their time is a lower bound for ours: when the
floor alone is past a case's target ratio, no amount of tuning of our checks meets it.

- **P1**: read the JSONL in blocks, decode every line once with msgspec (no check of what it
  holds), write the create body to a staging file while a second thread takes its SHA-256
  (the job's fingerprint), then stream that file as the create body.
- **P2**: stream the results body to a file, split it into lines and decode each line with
  msgspec into a struct that keeps only its ``custom_id``.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _inputs import API_KEY, count_lines

BLOCK = 1 << 20
HEADERS = {"anthropic-version": "2023-06-01", "content-type": "application/json"}


def child_p1_floor(work: Path, base_url: str) -> dict[str, Any]:
    import httpx
    import msgspec

    decode = msgspec.json.Decoder().decode
    digest = hashlib.sha256()
    with tempfile.TemporaryDirectory(prefix="p1-floor-", dir=work) as staging:
        body = Path(staging) / "body.json"
        t0, cpu0 = time.perf_counter(), time.process_time()
        with (
            (work / "p1-requests.jsonl").open("rb") as source,
            body.open("wb") as out,
            ThreadPoolExecutor(1) as writer,
        ):

            def put(data: bytes) -> None:
                digest.update(data)
                out.write(data)

            pending = writer.submit(put, b'{"requests":[')
            rest, first = b"", True
            while block := source.read(BLOCK):
                lines = (rest + block).split(b"\n")
                rest = lines.pop()
                if not lines:
                    continue  # a line longer than a block: it goes on in the next one
                for line in lines:
                    decode(line)
                pending.result()
                pending = writer.submit(put, (b"" if first else b",") + b",".join(lines))
                first = False
            if rest:
                decode(rest)
                pending.result()
                pending = writer.submit(put, (b"" if first else b",") + rest)
            pending.result()
            put(b"]}")
        t1 = time.perf_counter()

        def blocks() -> Iterator[bytes]:
            with body.open("rb") as stream:
                while data := stream.read(BLOCK):
                    yield data

        headers = {**HEADERS, "x-api-key": API_KEY, "content-length": str(body.stat().st_size)}
        with httpx.Client(timeout=600) as client:
            url = f"{base_url}/v1/messages/batches"
            client.post(url, content=blocks(), headers=headers).raise_for_status()
        t2, cpu2 = time.perf_counter(), time.process_time()
    return {
        "seconds": t2 - t0,
        "cpu_s": cpu2 - cpu0,
        "read_decode_stage_s": t1 - t0,
        "upload_s": t2 - t1,
    }


def child_p2_floor(work: Path, base_url: str) -> dict[str, Any]:
    import httpx
    import msgspec

    class Line(msgspec.Struct):
        custom_id: str

    decode = msgspec.json.Decoder(Line).decode
    expected = count_lines(work / "p2-results.jsonl")
    lines = 0
    target = work / "p2-floor.jsonl"
    t0, cpu0 = time.perf_counter(), time.process_time()
    url = f"{base_url}/v1/messages/batches/msgbatch_p2/results"
    with (
        httpx.Client(timeout=600) as client,
        client.stream("GET", url, headers={**HEADERS, "x-api-key": API_KEY}) as answer,
        target.open("wb") as out,
    ):
        answer.raise_for_status()
        rest = b""
        for block in answer.iter_bytes(BLOCK):
            out.write(block)
            parts = (rest + block).split(b"\n")
            rest = parts.pop()
            for part in parts:
                if part:
                    decode(part)
                    lines += 1
        if rest.strip():
            decode(rest)
            lines += 1
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    target.unlink()
    if lines != expected:
        raise RuntimeError(f"the floor read {lines} lines of {expected}")
    return {"seconds": seconds, "cpu_s": cpu}
