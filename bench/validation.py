"""Pre-flight validation alone: what each layer costs, and memory on an absurd line.

    .venv/bin/python bench/validation.py                     # 100,000 requests, ~191 MB
    .venv/bin/python bench/validation.py --requests 2000     # quick

For one input it prints MB/s (best of ``--repeat``, in this process; wall clock, and CPU time
of all threads, which holds better on a shared machine) of:

- ``json.loads`` per line (stdlib; what pre-flight used before) and ``msgspec`` decode alone;
- ``decode_line``: msgspec plus the checks it cannot do itself (duplicate keys, via the count of
  keys and colons; depth; a BOM inside a line). Invalid UTF-8 and lone surrogates are refused
  by msgspec itself, so they cost nothing extra;
- ``check``: the whole judgement of one request (structure, roles, max_tokens, ...);
- ``prepare``: the pre-flight of ``SubmitBatchOperator`` (read, check, unique custom_ids,
  stage to a file and fingerprint it), which is what "validation" means in issue 15.

Then the same for a hostile mix (one line in a hundred has a duplicate key, and is refused),
with how many lines took the careful path; and a 280 MB line, refused with the peak memory of
the process that read it, over its baseline.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from airflow_batches.jobs.prepare import (
    MAX_LINE_BYTES,
    RequestValidationError,
    RequestValidator,
    decode_line,
    prepare,
    records_from_jsonl,
)
from airflow_batches.jobs.prepare import _request_json as _decode

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _inputs import write_requests  # noqa: E402  (bench/ is a folder of scripts, not a package)


def best(repeat: int, fn: Callable[[], object]) -> tuple[float, float]:
    """The shortest wall-clock and CPU times (all threads) of ``repeat`` runs."""
    walls, cpus = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus)


def each(lines: list[bytes], fn: Callable[[bytes], object]) -> Callable[[], None]:
    def run() -> None:
        for line in lines:
            fn(line)

    return run


def layers(path: Path, repeat: int, label: str) -> None:
    data = path.read_bytes()
    lines = data.splitlines()
    size = len(data)
    validator = RequestValidator(anthropic_version="2023-06-01")
    careful = [0]
    original = _decode._careful

    def counting(line: bytes) -> object:
        careful[0] += 1
        return original(line)

    def staged() -> None:
        with (
            path.open("rb") as stream,
            tempfile.TemporaryFile() as sink,
            contextlib.suppress(RequestValidationError),
        ):
            prepare(records_from_jsonl(stream), validator, sink)

    print(f"\n{label}: {len(lines):,} lines, {size / 1e6:.1f} MB")
    rows = [
        ("json.loads (stdlib)", each(lines, json.loads)),
        ("msgspec decode", each(lines, msgspec.json.decode)),
        ("decode_line (fast path + checks)", each(lines, decode_line)),
        ("RequestValidator.check", each(lines, lambda line: validator.check("line", line))),
        ("prepare (read+check+stage+hash)", staged),
    ]
    print(f"  {'':34} {'wall s':>8} {'MB/s':>7} {'CPU s':>8} {'MB/s':>7}")
    for name, fn in rows:
        if name.startswith("decode_line"):
            _decode._careful = counting  # type: ignore[assignment]
            fn()
            _decode._careful = original
        wall, cpu = best(repeat, fn)
        print(
            f"  {name:34} {wall:8.3f} {size / 1e6 / wall:7.0f} {cpu:8.3f} {size / 1e6 / cpu:7.0f}"
        )
    print(f"  lines that took the careful path: {careful[0]:,} of {len(lines):,}")


def hostile_copy(path: Path, out: Path) -> None:
    """The same input with a duplicate max_tokens in one line of every hundred."""
    with path.open("rb") as src, out.open("wb") as dst:
        for n, line in enumerate(src):
            if n % 100 == 50:
                line = line.replace(b'"max_tokens": 16', b'"max_tokens": 16, "max_tokens": 9')
            dst.write(line)


def absurd_line(size: int, limit: int) -> None:
    """One request line of ``size`` bytes, made on the fly; peak RSS over the baseline."""

    class Endless(io.RawIOBase):
        head = b'{"custom_id":"huge","params":{"messages":[{"role":"user","content":"'
        left = size - len(head)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            if self.head:
                n = len(self.head)
                buffer[:n], self.head = self.head, b""
                return n
            n = min(len(buffer), self.left)
            buffer[:n] = b"x" * n
            self.left -= n
            return n

    validator = RequestValidator(anthropic_version="2023-06-01")
    baseline = vm_hwm_mib()
    t0 = time.perf_counter()
    try:
        records = records_from_jsonl(io.BufferedReader(Endless(), 1 << 20), max_line_bytes=limit)
        prepare(records, validator, io.BytesIO())
        verdict = "accepted (!)"
    except RequestValidationError as exc:
        verdict = exc.problems[0]["message"]
    seconds = time.perf_counter() - t0
    peak = vm_hwm_mib()
    print(
        f"\none line of {size / 1e6:.0f} MB: {verdict}\n  {seconds:.1f} s; peak RSS "
        f"{peak:.0f} MiB, baseline {baseline:.0f} MiB: +{peak - baseline:.0f} MiB"
    )


def vm_hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--prompt-bytes", type=int, default=1769)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--absurd-mb", type=int, default=280)
    parser.add_argument(
        "--line-limit", type=int, default=MAX_LINE_BYTES, help="bytes (default: a batch body)"
    )
    args = parser.parse_args()
    if args.absurd_mb:  # first, so that the baseline is that of a fresh process
        absurd_line(args.absurd_mb * 1_000_000, args.line_limit)
    with tempfile.TemporaryDirectory(prefix="bench-validation-") as work:
        path = Path(work) / "requests.jsonl"
        write_requests(path, args.requests, args.prompt_bytes)
        layers(path, args.repeat, "valid input")
        hostile = Path(work) / "hostile.jsonl"
        hostile_copy(path, hostile)
        layers(hostile, args.repeat, "hostile mix (1 % duplicate keys)")


if __name__ == "__main__":
    main()
