"""Submit and fetch at scale: time and peak memory of each phase, against the emulator.

    .venv/bin/python bench/job_scale.py --requests 100000 --prompt-bytes 2000
    .venv/bin/python bench/job_scale.py --requests 250000 --max-requests 100000

Each phase runs in its own process so its peak RSS is its own: ``prepare`` (validate, encode,
stage, plan shards), ``submit`` (stream every shard's body to the emulator), ``fetch`` (stream
every result to a file while scanning it for the manifest). Memory should stay flat as
``--requests`` grows; the input file itself never sits in memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from airflow_batches.api import Client
from airflow_batches.emulator.config import EmulatorConfig
from airflow_batches.emulator.testing import serve_emulator
from airflow_batches.jobs._descriptor import BatchInfo
from airflow_batches.jobs._store import JobStore
from airflow_batches.jobs.prepare import (
    REQUESTS_FILE,
    Limits,
    RequestValidator,
    records_from_jsonl,
    stage_requests,
)
from airflow_batches.jobs.results import Attempt, FileSinks, Reader, ResultTally, stream_final_lines
from airflow_batches.jobs.submit import JobSubmitter, MemoryLedger, new_ledger

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _inputs import write_requests


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_submit(args: argparse.Namespace) -> dict[str, object]:
    work = Path(args.work)
    limits = Limits(max_requests=args.max_requests, max_bytes=args.max_bytes)
    validator = RequestValidator(anthropic_version="2023-06-01", limits=limits)
    t0 = time.perf_counter()
    with (work / "input.jsonl").open("rb") as stream:
        job, prepared = stage_requests(
            JobStore(work / "staging"), records_from_jsonl(stream), validator
        )
    t_prepare = time.perf_counter() - t0
    rss_prepare = peak_mib()
    client = Client(api_key="emulator-key", base_url=args.base_url, timeout=600)
    ledger = new_ledger(prepared, anthropic_version="2023-06-01")
    t1 = time.perf_counter()
    JobSubmitter(client, MemoryLedger(), lambda: job.path(REQUESTS_FILE).open("rb")).submit(ledger)
    t_submit = time.perf_counter() - t1
    batches: list[dict[str, Any]] = [
        {"id": s.batch_id, "request_count": s.request_count, "body_bytes": s.body_bytes}
        for s in ledger.shards
    ]
    (work / "batches.json").write_text(json.dumps(batches))
    return {
        "prepare_s": round(t_prepare, 2),
        "prepare_peak_mib": round(rss_prepare, 1),
        "submit_s": round(t_submit, 2),
        "submit_peak_mib": round(peak_mib(), 1),
        "batches": [(b["request_count"], round(int(b["body_bytes"]) / 1e6, 1)) for b in batches],
    }


class _Log:
    def warning(self, message: str, *args: object) -> None:
        print(message % args if args else message, file=sys.stderr)

    info = error = warning


def _no_more_files(key: str) -> IO[bytes]:
    raise AssertionError(f"one results file only, not {key}")


def phase_fetch(args: argparse.Namespace) -> dict[str, object]:
    work = Path(args.work)
    batches = json.loads((work / "batches.json").read_text())
    client = Client(api_key="emulator-key", base_url=args.base_url, timeout=600)
    attempt = Attempt(
        number=1, batches=[BatchInfo(id=b["id"], request_count=b["request_count"]) for b in batches]
    )
    tally = ResultTally()
    t0 = time.perf_counter()
    known = {b["id"]: client.retrieve(b["id"]) for b in batches}
    with (work / "results.jsonl").open("wb") as out:
        sinks = FileSinks({"results": out}, split_by_type=False, open_more=_no_more_files)

        def sink(record, line):  # type: ignore[no-untyped-def]
            tally.add(record)
            sinks(record, line)

        stats = stream_final_lines(Reader(client, _Log()), [attempt], known, sink)
        sinks.flush()
    elapsed = time.perf_counter() - t0
    size = (work / "results.jsonl").stat().st_size
    return {
        "fetch_s": round(elapsed, 2),
        "fetch_mb": round(size / 1e6, 1),
        "fetch_mb_per_s": round(size / 1e6 / elapsed, 1),
        "fetch_peak_mib": round(peak_mib(), 1),
        "lines": stats.lines,
        "cost_usd": round(tally.cost_usd, 4),
    }


def run_phase(name: str, args: argparse.Namespace, base_url: str) -> dict[str, object]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--phase",
            name,
            "--work",
            args.work,
            "--base-url",
            base_url,
            "--max-requests",
            str(args.max_requests),
            "--max-bytes",
            str(args.max_bytes),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--prompt-bytes", type=int, default=1500)
    parser.add_argument("--max-requests", type=int, default=100_000)
    parser.add_argument("--max-bytes", type=int, default=256_000_000)
    parser.add_argument("--phase", choices=["submit", "fetch"])
    parser.add_argument("--work")
    parser.add_argument("--base-url")
    args = parser.parse_args()
    if args.phase:
        fn = phase_submit if args.phase == "submit" else phase_fetch
        print(json.dumps(fn(args)))
        return

    with tempfile.TemporaryDirectory(prefix="bench-job-") as work:
        args.work = work
        t0 = time.perf_counter()
        write_requests(Path(work) / "input.jsonl", args.requests, args.prompt_bytes)
        size = (Path(work) / "input.jsonl").stat().st_size
        took = time.perf_counter() - t0
        print(f"input: {args.requests:,} requests, {size / 1e6:.1f} MB ({took:.1f} s to write)")
        config = EmulatorConfig(max_queued_requests=10_000_000, workers=8)
        with serve_emulator(config, data_dir=Path(work) / "emulator") as emulator:
            submitted = run_phase("submit", args, emulator.base_url)
            print("submit:", json.dumps(submitted))
            batches = json.loads((Path(work) / "batches.json").read_text())
            t1 = time.perf_counter()
            for batch in batches:
                emulator.wait_ended(batch["id"], timeout=3600)
            print(f"processing (emulator, zero latency): {time.perf_counter() - t1:.1f} s")
            fetched = run_phase("fetch", args, emulator.base_url)
            print("fetch:", json.dumps(fetched))


if __name__ == "__main__":
    main()
