"""A nightly eval at scale: N requests x 3 models, twice, with peak memory per phase.

    .venv/bin/python bench/eval_scale.py                       # 10,000 and 100,000 requests
    .venv/bin/python bench/eval_scale.py --requests 100000     # one size

Night 1: ``submit`` (the model matrix and the metadata sidecar staged from a JSONL file, the
cross-run cache looked up, every batch created), the batches processed by the emulator (its
eval responder), ``fetch`` (every line checked, joined with its metadata and model, published,
and stored in the cache), ``evaluate`` (every line scored, ``scores.jsonl``, the summary and
the report). Night 2, unchanged: ``submit`` answers everything from the cache (the emulator's
create calls are counted: none), ``fetch`` publishes the cached lines, ``evaluate`` compares
every request with night 1 (the baseline's scores in a disk index).

Each phase runs in a process of its own, so its peak RSS is its own; the emulator runs in
another. Every phase prints its seconds, requests (or lines) per second, peak RSS, the CPU
seconds of its process and the load average when it ended (the machine is shared: a loaded
machine stretches the seconds, not the CPU). What may grow with N is pre-flight's set of
request keys (16 bytes each, ``jobs/prepare/_fanout``); the joins (metadata, cache, baseline)
are indexes on disk, and the cache's lookup holds one range of keys at a time.

Night 2's submit reuses night 1's pre-flight (a receipt in the cache: ``jobs/cache/_receipts``,
the same input with the same settings is not judged again) and finds every request in the
cache.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

MODELS = ["claude-haiku-5-5", "claude-sonnet-5-5", "claude-opus-5-5"]
ERROR_RATES = {"claude-haiku-5-5": 0.2, "claude-sonnet-5-5": 0.05, "claude-opus-5-5": 0.0}
VERSION = "2023-06-01"


class Log:
    def info(self, message: str, *args: Any) -> None:
        print("   ", message % args if args else message, file=sys.stderr, flush=True)

    warning = error = info


def peak_mib() -> float:
    """This process's peak RSS. ``VmHWM`` belongs to the process image (``ru_maxrss`` would
    carry over the parent's peak through fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- phases (each in its own process) -------------------------------------------------------


def phase_submit(work: Path, base_url: str, night: int) -> dict[str, Any]:
    from airflow_batches.api import Client
    from airflow_batches.jobs._descriptor import JobDescriptor, job_key
    from airflow_batches.jobs._store import JobStore
    from airflow_batches.jobs.cache import CacheStep, CrossRunCache, endpoint_identity
    from airflow_batches.jobs.prepare import (
        ModelMatrix,
        Parts,
        RequestValidator,
        Sidecar,
        envelope_parts,
        records_from_jsonl,
    )
    from airflow_batches.jobs.submit import (
        MemoryLedger,
        batch_infos,
        descriptor_from_ledger,
        new_ledger,
        submit_job,
        utcnow,
    )

    matrix = ModelMatrix.of(MODELS)
    sidecar = Sidecar()
    source = work / "eval.jsonl"
    records = Parts(envelope_parts(lambda: records_from_jsonl(source.open("rb")), sidecar, matrix))
    validator = RequestValidator(
        anthropic_version=VERSION, defaults={"max_tokens": 64}, metadata=sidecar.metadata
    )
    cache = CrossRunCache(
        work / "cache", endpoint=endpoint_identity(base_url), anthropic_version=VERSION
    )
    step = CacheStep(cache, RequestValidator(anthropic_version=VERSION), matrix.part_of)
    client = Client(api_key="emulator-key", base_url=base_url, timeout=600)
    staged_at: list[float] = []
    t0, cpu0 = time.perf_counter(), time.process_time()
    done = submit_job(
        records,
        validator,
        root=JobStore(work / f"staging-{night}"),
        client=client,
        backend_for=lambda prepared, store: MemoryLedger(),
        sidecar=sidecar,
        cache=step,
        logger=Log(),
        on_staged=lambda staged: staged_at.append(time.perf_counter()),
    )
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    staged = done.staged
    assert staged is not None and staged.cache is not None
    ledger = done.ledger or new_ledger(done.prepared, anthropic_version=VERSION)
    if done.ledger is None:
        ledger.shards = []
    job: JobDescriptor = descriptor_from_ledger(
        ledger,
        conn_id="bench",
        job_dir=str(done.store.root),
        job_dir_conn_id=None,
        submitted_at=utcnow(),
    )
    job.job_id = job_key(done.prepared.fingerprint)
    job.fingerprint = done.prepared.fingerprint
    job.request_count = done.prepared.request_count
    job.batches = batch_infos(ledger, staged.sent_file) if done.ledger else []
    job.cache = staged.cache.model_dump(mode="json")
    job.matrix = matrix.to_json()
    job.sidecar_file = sidecar.name if sidecar.count else ""
    (work / f"job-{night}.json").write_text(job.model_dump_json())
    return {
        "submit_s": round(elapsed, 2),
        "submit_per_s": round(done.prepared.request_count / elapsed),
        # Through matrix, metadata, validation, staging and the cache lookup; the rest of the
        # phase is the create calls (waiting for the API, and for room in its queue).
        "submit_staged_s": round(staged_at[0] - t0, 2),
        "submit_staged_per_s": round(done.prepared.request_count / (staged_at[0] - t0)),
        "submit_cpu_s": round(cpu, 2),
        "submit_load": round(os.getloadavg()[0], 2),
        "submit_peak_mib": round(peak_mib(), 1),
        "requests": done.prepared.request_count,
        "batches": len(job.batches),
        "cache_hits": staged.cache.hits,
    }


def phase_fetch(work: Path, base_url: str, night: int) -> dict[str, Any]:
    from datetime import UTC, datetime

    from airflow_batches.api import Client
    from airflow_batches.api._pricing import load_price_table
    from airflow_batches.jobs._descriptor import JobDescriptor
    from airflow_batches.jobs._store import JobStore
    from airflow_batches.jobs.cache import CrossRunCache, endpoint_identity
    from airflow_batches.jobs.results import FetchState, FetchWorkflow, Published

    job = JobDescriptor.model_validate_json((work / f"job-{night}.json").read_text())
    client = Client(api_key="emulator-key", base_url=base_url, timeout=600)
    flow = FetchWorkflow(
        job=job,
        state=FetchState.start(job),
        client=client,
        prices=load_price_table(),
        log=Log(),
        staged=JobStore(Path(job.job_dir)),
        cache=CrossRunCache(
            work / "cache", endpoint=endpoint_identity(base_url), anthropic_version=VERSION
        ),
    )
    destination = work / f"results-{night}"
    t0, cpu = time.perf_counter(), time.process_time()
    published = flow.publish(destination, datetime.now(UTC))
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu
    assert isinstance(published, Published)
    manifest = published.manifest.to_json()
    return {
        "fetch_s": round(elapsed, 1),
        "fetch_cpu_s": round(cpu, 1),
        "fetch_lines_per_s": round(manifest["lines"] / elapsed),
        "fetch_peak_mib": round(peak_mib(), 1),
        "lines": manifest["lines"],
        "results_mb": round((destination / "results.jsonl").stat().st_size / 1e6, 1),
        "stored_in_cache": (manifest.get("cache") or {}).get("stored"),
    }


def phase_evaluate(work: Path, base_url: str, night: int) -> dict[str, Any]:
    from airflow_batches.api._pricing import load_price_table
    from airflow_batches.evals import (
        Baseline,
        EvalSettings,
        Thresholds,
        by_category,
        evaluate_job,
        exact_match,
        json_schema,
        numeric,
    )

    folder = work / f"results-{night}"
    manifest = json.loads((folder / "manifest.json").read_text())
    scorer = by_category(
        {
            "arithmetic": numeric(),
            "lookup": exact_match(),
            "extraction": json_schema(schema_key="schema"),
        }
    )
    baseline = Baseline.load(work / f"results-{night - 1}") if night > 1 else None
    t0, cpu = time.perf_counter(), time.process_time()
    summary = evaluate_job(
        manifest,
        EvalSettings(scorer, load_price_table(), thresholds=Thresholds(max_regression=0.0)),
        output=folder,
        result_files=[folder / "results.jsonl"],
        baseline=baseline,
        run={"run_id": f"night-{night}"},
    )
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu
    return {
        "evaluate_s": round(elapsed, 1),
        "evaluate_cpu_s": round(cpu, 1),
        "evaluate_lines_per_s": round(summary["lines"] / elapsed),
        "evaluate_peak_mib": round(peak_mib(), 1),
        "pass_rates": {m: f["pass_rate"] for m, f in summary["models"].items()},
        "compared": sum(f.get("compared", 0) for f in summary["models"].values()),
        "scores_reused": sum(f.get("scores_reused", 0) for f in summary["models"].values()),
        "regressions": (summary.get("regressions") or {}).get("count"),
        "report_kb": round((folder / "report.html").stat().st_size / 1024, 1),
    }


PHASES = {"submit": phase_submit, "fetch": phase_fetch, "evaluate": phase_evaluate}


# -- the driver -----------------------------------------------------------------------------


def run_phase(name: str, work: Path, base_url: str, night: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--phase", name, str(work), base_url, str(night)],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ended(base_url: str, work: Path, night: int) -> float:
    job = json.loads((work / f"job-{night}.json").read_text())
    t0 = time.perf_counter()
    for batch in job["batches"]:
        while True:
            info = httpx.get(f"{base_url}/_emulator/batches/{batch['id']}").json()
            if info["status"] == "ended":
                break
            time.sleep(0.5)
    return round(time.perf_counter() - t0, 1)


def create_calls(base_url: str) -> int:
    stats = httpx.get(f"{base_url}/_emulator/stats").json()
    return sum(w["create_calls"] for w in stats["workspaces"].values())


def one_size(n: int) -> dict[str, Any]:
    from airflow_batches.emulator.evalset import eval_requests

    work = Path(tempfile.mkdtemp(prefix="eval-bench-"))
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    options = json.dumps({"error_rates": ERROR_RATES})
    server = subprocess.Popen(
        [
            sys.executable, "-m", "airflow_batches.emulator", "--port", str(port),
            "--data-dir", str(work / "emulator"), "--workers", "4", "--log-level", "warning",
            "--responder", "airflow_batches.emulator.evalset:eval_responder",
            "--set", f"responder_options={options}",
            # Room in the workspace's queue for the whole night (default 500,000 requests):
            # at 1,000,000 x 3 night 1 would otherwise wait for batches to end between creates.
            "--max-queued-requests", str(max(500_000, n * len(MODELS))),
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                httpx.get(f"{base_url}/_emulator/health")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        with (work / "eval.jsonl").open("w") as out:
            for request in eval_requests(n, seed=1):
                out.write(json.dumps(request) + "\n")
        figures: dict[str, Any] = {"requests": n, "models": len(MODELS)}
        for night in (1, 2):
            before = create_calls(base_url)
            submit = run_phase("submit", work, base_url, night)
            figures[f"night{night}_create_calls"] = create_calls(base_url) - before
            figures[f"night{night}_processing_s"] = wait_ended(base_url, work, night)
            for name, result in (
                ("submit", submit),
                ("fetch", run_phase("fetch", work, base_url, night)),
                ("evaluate", run_phase("evaluate", work, base_url, night)),
            ):
                result.setdefault(f"{name}_load", round(os.getloadavg()[0], 2))
                figures.update({f"night{night}_{k}": v for k, v in result.items()})
                print(f"  night {night} {name}: {result}", flush=True)
        return figures
    finally:
        server.terminate()
        server.wait(timeout=30)
        if os.environ.get("EVAL_BENCH_KEEP"):  # to profile a phase again: --phase NAME WORK URL N
            print(f"  kept {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--phase":
        name, work, base_url, number = sys.argv[2:6]
        print(json.dumps(PHASES[name](Path(work), base_url, int(number))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, action="append")
    args = parser.parse_args()
    sizes = args.requests or [10_000, 100_000]
    rows = []
    for n in sizes:
        print(f"{n:,} requests x {len(MODELS)} models", flush=True)
        rows.append(one_size(n))
    print(
        "\nper phase: seconds, requests (lines) per second, peak RSS (MiB), load average at its end"
    )
    for row in rows:
        print(f"  {row['requests']:,} x {row['models']}")
        for night in (1, 2):
            for phase in ("submit", "fetch", "evaluate"):
                seconds = row.get(f"night{night}_{phase}_s")
                if seconds is None:
                    continue
                count = row["requests"] * row["models"]
                rate = f"{count / seconds:>11,.0f}/s" if seconds else "-"
                print(
                    f"    night {night} {phase:<9}{seconds:>9.2f} s {rate}"
                    f"{row.get(f'night{night}_{phase}_peak_mib', 0):>9.1f} MiB"
                    f"   load {row.get(f'night{night}_{phase}_load', '-')}"
                )
                staged = row.get(f"night{night}_submit_staged_s") if phase == "submit" else None
                if staged:
                    print(
                        f"      of which staged  {staged:>9.2f} s {count / staged:>11,.0f}/s"
                        "   (matrix, metadata, validation, staging, cache lookup; then creates)"
                    )
            total = sum(row.get(f"night{night}_{p}_s", 0) for p in ("submit", "fetch", "evaluate"))
            print(
                f"    night {night} total    {total:>9.2f} s   create calls "
                f"{row[f'night{night}_create_calls']}"
            )
        one = sum(row.get(f"night1_{p}_s", 0) for p in ("submit", "fetch", "evaluate"))
        two = sum(row.get(f"night2_{p}_s", 0) for p in ("submit", "fetch", "evaluate"))
        if one:
            print(f"    night 2 / night 1: {two / one:.2f} of the time (target: at most 0.25)")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
