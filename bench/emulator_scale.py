"""The emulator at the real limits: a 100,000-request, ~200 MB batch, end to end.

Starts ``python -m airflow_batches.emulator`` as a subprocess (so its memory is its own),
streams the create body from a generator, polls until the batch has ended, streams the
results back, and prints:

* create time (upload + server-side check of every item),
* processing time (create answered -> ``ended``),
* results download time and size,
* peak RSS of the server process (``VmHWM``), and of this client process.

Usage: ``.venv/bin/python bench/emulator_scale.py [--requests 100000] [--item-bytes 2000]
[--workers 4]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

_WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa")


def body(n: int, item_bytes: int, piece: int = 1 << 18) -> Iterator[bytes]:
    """``{"requests":[...]}`` with ``n`` items of about ``item_bytes`` bytes each, in pieces
    of about ``piece`` bytes (one write per item would time the client, not the server)."""
    buffer = bytearray()
    for part in _items(n, item_bytes):
        buffer += part
        if len(buffer) >= piece:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


def _items(n: int, item_bytes: int) -> Iterator[bytes]:
    yield b'{"requests":['
    filler = " ".join(_WORDS * (item_bytes // 40 + 1))
    for i in range(n):
        text = f"question {i}: {filler}"[: max(item_bytes - 160, 16)]
        item = {
            "custom_id": f"req-{i:06d}",
            "params": {
                "model": "claude-sonnet-4-5",
                "max_tokens": 64,
                "messages": [{"role": "user", "content": text}],
            },
        }
        yield (b"," if i else b"") + json.dumps(item, separators=(",", ":")).encode()
    yield b"]}"


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--item-bytes", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="emulator-bench-"))
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_batches.emulator",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            "--workers",
            str(args.workers),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        base_url = key = None
        for line in server.stdout:
            if "base URL" in line:
                base_url = line.split(":", 1)[1].strip()
            if "API key" in line:
                key = line.split(":", 1)[1].strip()
                break
        if not base_url or not key:
            raise RuntimeError("the emulator did not print its address")
        headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
        idle_rss = peak_rss_mib(server.pid)

        with httpx.Client(base_url=base_url, headers=headers, timeout=600) as http:
            sent = 0

            def counted() -> Iterator[bytes]:
                nonlocal sent
                for chunk in body(args.requests, args.item_bytes):
                    sent += len(chunk)
                    yield chunk

            t0 = time.perf_counter()
            created = http.post(
                "/v1/messages/batches",
                content=counted(),
                headers={"content-type": "application/json"},
            )
            t1 = time.perf_counter()
            created.raise_for_status()
            batch = created.json()
            print(f"requests          : {args.requests}")
            print(f"body              : {sent / 1e6:.1f} MB")
            print(f"create            : {t1 - t0:.2f} s")

            while batch["processing_status"] != "ended":
                time.sleep(0.25)
                batch = http.get(f"/v1/messages/batches/{batch['id']}").json()
            t2 = time.perf_counter()
            print(f"processing        : {t2 - t1:.2f} s  ({batch['request_counts']})")

            lines = size = 0
            with http.stream("GET", batch["results_url"]) as results:
                results.raise_for_status()
                for line in results.iter_lines():
                    if line:
                        lines += 1
                        size += len(line) + 1
            t3 = time.perf_counter()
            print(f"results download  : {t3 - t2:.2f} s  ({lines} lines, {size / 1e6:.1f} MB)")
            print(f"total             : {t3 - t0:.2f} s")
            assert lines == args.requests, f"{lines} result lines for {args.requests} requests"
        print(f"server RSS idle   : {idle_rss:.0f} MiB")
        print(f"server peak RSS   : {peak_rss_mib(server.pid):.0f} MiB")
        client_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"client peak RSS   : {client_peak:.0f} MiB")
    finally:
        server.terminate()
        server.wait(timeout=30)
        subprocess.run(["rm", "-rf", str(data_dir)], check=False)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
