"""The cross-run cache as it grows: one job's lookup against a cache of one night and of ten.

    .venv/bin/python bench/cache_growth.py                     # 100,000 questions x 3 models
    .venv/bin/python bench/cache_growth.py --requests 1000     # smoke

A nightly eval job (N questions x 3 models) is staged once. Two caches are filled the way a
fetch fills them (``CacheWriter``: one segment per night, a synthetic answer of about 600
bytes per request): *one night* holds just this job's answers; *ten nights* holds them and
nine earlier nights of other questions, ten times the entries. The job is then looked up in
each (``CrossRunCache.lookup``: every request a hit, its answer copied into the job), each
lookup in a process of its own, alternately, ``--rounds`` times. The figure that matters is
the ratio of the medians: a lookup must not grow with the cache (issue 31: at most 1.5x).

A third lookup, *ten nights, all new*, looks up questions the cache has never seen (every
request a miss, as on a first night): what the ten nights cost a job that finds nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODELS = ["claude-haiku-5-5", "claude-sonnet-5-5", "claude-opus-5-5"]
VERSION = "2023-06-01"
ENDPOINT = "http://127.0.0.1:1/"
ANSWER = json.dumps(
    {
        "type": "succeeded",
        "message": {
            "id": "msg_0",
            "type": "message",
            "role": "assistant",
            "model": "claude-haiku-5-5",
            "content": [{"type": "text", "text": "lorem ipsum " * 36}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 40, "output_tokens": 120},
        },
    }
).encode()


class Log:
    def info(self, message: str, *args: Any) -> None:
        pass

    warning = error = info


def peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def stage(work: Path, name: str, n: int, first: int) -> Path:
    """Stage N questions (ids from ``first``) x 3 models under ``work/name``; its folder."""
    from airflow_batches.jobs._store import JobStore
    from airflow_batches.jobs.prepare import (
        ModelMatrix,
        Parts,
        RequestValidator,
        envelope_parts,
        records_from_items,
        stage_requests,
    )

    def source() -> Any:
        return records_from_items(
            {
                "custom_id": f"q{first + i:08d}",
                "params": {"messages": [{"role": "user", "content": f"question {first + i}"}]},
            }
            for i in range(n)
        )

    validator = RequestValidator(anthropic_version=VERSION, defaults={"max_tokens": 64})
    records = Parts(envelope_parts(source, None, ModelMatrix.of(MODELS)))
    job, _ = stage_requests(JobStore(work / name), records, validator)
    return Path(str(job.root))


def cache_of(folder: Path) -> Any:
    from airflow_batches.jobs.cache import CrossRunCache

    return CrossRunCache(folder, endpoint=ENDPOINT, anthropic_version=VERSION)


def fill(cache_folder: Path, job_folder: Path) -> None:
    """One night: every request of the job answered and stored, as a fetch stores them."""
    from airflow_batches.jobs._store import JobStore
    from airflow_batches.jobs.cache._layout import UNCACHED_FILE

    cache, job = cache_of(cache_folder), JobStore(job_folder)
    info, _ = cache.lookup(job, "requests.jsonl", Log())
    writer = cache.writer(job, info)
    with job.path(UNCACHED_FILE).open("rb") as stream:
        for line in stream:
            custom_id = json.loads(line)["custom_id"]
            writer.add(custom_id, "msgbatch_bench", ANSWER)
    writer.commit()
    shutil.rmtree(job_folder / "cache")


def child_lookup(cache_folder: Path, job_folder: Path) -> dict[str, Any]:
    from airflow_batches.jobs._store import JobStore

    shutil.rmtree(job_folder / "cache", ignore_errors=True)
    cache = cache_of(cache_folder)
    count = sum(1 for _ in (job_folder / "requests.jsonl").open("rb"))
    t0, cpu0 = time.perf_counter(), time.process_time()
    info, _ = cache.lookup(JobStore(job_folder), "requests.jsonl", Log(), request_count=count)
    return {
        "seconds": time.perf_counter() - t0,
        "cpu_s": time.process_time() - cpu0,
        "hits": info.hits,
        "misses": info.misses,
        "segments": info.segments_read,
        "peak_mib": peak_mib(),
    }


def run_child(cache_folder: Path, job_folder: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(cache_folder), str(job_folder)],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000, help="questions (x 3 models)")
    parser.add_argument("--nights", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_lookup(*args.child)))
        return 0
    n = args.requests
    work = Path(tempfile.mkdtemp(prefix="cache-growth-", dir=args.work))
    try:
        t0 = time.perf_counter()
        job = stage(work, "job", n, 0)
        new = stage(work, "new", n, n * args.nights)
        fill(work / "one", stage(work, "fill-0", n, 0))
        shutil.copytree(work / "one", work / "ten")
        for night in range(1, args.nights):
            fill(work / "ten", stage(work, f"fill-{night}", n, n * night))
        print(
            f"{n:,} questions x {len(MODELS)} models; caches filled in "
            f"{time.perf_counter() - t0:.0f} s (load average {os.getloadavg()[0]:.2f})"
        )
        cases = {
            "one night": (work / "one", job),
            f"{args.nights} nights": (work / "ten", job),
            f"{args.nights} nights, all new": (work / "ten", new),
        }
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, (cache_folder, job_folder) in cases.items():
                runs[name].append(run_child(cache_folder, job_folder))
        print(f"  {'lookup':<22}{'median s':>9}{'cpu s':>8}{'peak MiB':>10}  hits/misses  runs (s)")
        medians = {}
        for name, figures in runs.items():
            seconds = statistics.median(f["seconds"] for f in figures)
            cpu = statistics.median(f["cpu_s"] for f in figures)
            medians[name] = (seconds, cpu)
            last = figures[-1]
            print(
                f"  {name:<22}{seconds:9.2f}{cpu:8.2f}{last['peak_mib']:10.1f}  "
                f"{last['hits']:,}/{last['misses']:,} ({last['segments']} segment(s))  "
                + " ".join(f"{f['seconds']:.2f}" for f in figures)
            )
        one, ten = medians["one night"], medians[f"{args.nights} nights"]
        print(
            f"  {args.nights} nights / one night: {ten[0] / one[0]:.2f}x the time, "
            f"{ten[1] / one[1]:.2f}x the CPU (target: at most 1.5x)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
