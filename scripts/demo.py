"""`make demo`: a nightly eval across three models, end to end, offline, against the emulator.

Everything lives under ./.demo: the Airflow home (SQLite), the emulator's data, the staged
requests, the cross-run cache and the results (local object storage through
ObjectStoragePath). The emulator answers the eval set with its eval responder, wrong on
purpose for a share of each model's requests. Run it again: the second night is answered from
the cross-run cache (no create call at all) and compared with the first.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".demo"
BIN = Path(sys.executable).parent
DAG_ID = "message_batches_nightly_eval"
OUR_LOGGERS = (
    "airflow_batches",
    "Shard ",
    "Validated",
    "batch(es)",
    "Fetched",
    "resending",
    "Cross-run cache",
    "pass rate",
    "Baseline",
)
DEFAULT_PORT = 8089
ERROR_RATES = {"claude-haiku-5-5": 0.18, "claude-sonnet-5-5": 0.06, "claude-opus-5-5": 0.02}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # As the server binds (uvicorn sets it): last night's connections in TIME_WAIT
        # do not make the port taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def demo_port() -> int:
    """The emulator's port: last night's (kept in .demo/emulator.port), else 8089, else any.

    The cross-run cache keys name the endpoint (docs/evals.md), so an emulator on another
    port is another endpoint: night 2 is answered from the cache only on night 1's port."""
    kept = DEMO / "emulator.port"
    wanted = int(kept.read_text()) if kept.exists() else DEFAULT_PORT
    port = wanted if port_is_free(wanted) else free_port()
    if kept.exists() and port != wanted:
        print(
            f"Port {wanted} (last night's emulator) is taken: the emulator listens on {port}, "
            "another endpoint to the cross-run cache, so tonight nothing is answered from it."
        )
    kept.write_text(str(port))
    return port


def start_emulator(port: int) -> subprocess.Popen[bytes]:
    log = (DEMO / "emulator.log").open("wb")
    process = subprocess.Popen(
        [
            str(BIN / "airflow-batches"),
            "emulator",
            "--port",
            str(port),
            "--data-dir",
            str(DEMO / "emulator"),
            "--latency",
            "0.02",
            "--workers",
            "8",
            # A few transient failures, so the demo shows failed requests being resent.
            "--set",
            "result_errors.overloaded_error=0.05",
            "--responder",
            "airflow_batches.emulator.evalset:eval_responder",
            "--set",
            "responder_options=" + json.dumps({"error_rates": ERROR_RATES, "seed": 1}),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/_emulator/health").status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the emulator did not start; see {DEMO / 'emulator.log'}")


def main() -> int:
    DEMO.mkdir(exist_ok=True)
    shutil.rmtree(DEMO / "emulator", ignore_errors=True)
    port = demo_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(DEMO / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags_examples"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_BATCHES_RESULTS": f"file://{DEMO / 'results'}",
        "AIRFLOW_BATCHES_STAGING": f"file://{DEMO / 'staging'}",
        "AIRFLOW_BATCHES_CACHE": f"file://{DEMO / 'cache'}",
        "AIRFLOW_CONN_MESSAGE_BATCHES_DEFAULT": json.dumps(
            {
                "conn_type": "message_batches",
                "host": f"http://127.0.0.1:{port}",
                "password": "emulator-key",
            }
        ),
    }
    night = len(list((DEMO / "results").glob("*/summary.json"))) + 1
    print(f"Night {night}. Starting the emulator on http://127.0.0.1:{port} ...")
    emulator = start_emulator(port)
    try:
        print("Preparing the Airflow metadata database (SQLite) ...")
        subprocess.run(
            [str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True
        )
        print(f"Running `airflow dags test {DAG_ID}` ...\n")
        log_path = DEMO / "dags-test.log"
        with log_path.open("w") as log:
            run = subprocess.Popen(
                [str(BIN / "airflow"), "dags", "test", DAG_ID],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            assert run.stdout is not None
            for line in run.stdout:
                log.write(line)
                if any(mark in line for mark in OUR_LOGGERS):
                    print("  " + _short(line))
            code = run.wait()
        if code != 0:
            print(f"\nThe DAG run failed; full log: {log_path}")
            return code
        stats = httpx.get(f"http://127.0.0.1:{port}/_emulator/stats").json()
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
    creates = sum(w["create_calls"] for w in stats["workspaces"].values())
    return _report(DEMO / "results", log_path, creates)


def _short(line: str) -> str:
    # structlog lines: "<time> [info     ] <message> [logger] loc=..."; keep the message.
    text = line.strip()
    if "] " in text:
        text = text.split("] ", 1)[1]
    if " [airflow" in text:
        text = text.split(" [airflow", 1)[0]
    return text[:160]


def _pct(value: float | None) -> str:
    return "   -  " if value is None else f"{value * 100:5.1f}%"


def _usd(value: float | None) -> str:
    return "-" if value is None else f"${value:.6f}"


def _report(results: Path, log_path: Path, creates: int) -> int:
    summaries = sorted(results.glob("*/summary.json"), key=lambda p: p.stat().st_mtime)
    if not summaries:
        print(f"\nNo evaluation summary was written; full log: {log_path}")
        return 1
    summary = json.loads(summaries[-1].read_text())
    manifest = json.loads(summaries[-1].with_name("manifest.json").read_text())
    deltas = summary.get("deltas") or {}
    print("\nDone.")
    print(f"  requests:     {manifest['request_count']} ({len(summary['models'])} models)")
    print(f"  create calls: {creates} (emulator stats, this run)")
    cache = manifest.get("cache") or {}
    print(
        f"  cross-run cache: {cache.get('hits', 0)} hit(s), {cache.get('misses', 0)} sent, "
        f"{_usd(cache.get('cost_avoided_usd'))} avoided"
    )
    print(f"  {'model':<20} {'pass rate':>9} {'vs last':>8} {'cost':>11} {'per correct':>12}")
    for label, m in summary["models"].items():
        change = (deltas.get(label) or {}).get("pass_rate")
        shown = "   new" if change is None else f"{change * 100:+6.1f}pt"
        print(
            f"  {label:<20} {_pct(m['pass_rate']):>9} {shown:>8} {_usd(m['cost_usd']):>11} "
            f"{_usd(m['cost_per_correct_usd']):>12}"
        )
    baseline = summary.get("baseline")
    if baseline:
        regressions = (summary.get("regressions") or {}).get("count", 0)
        reused = sum(m.get("scores_reused", 0) for m in summary["models"].values())
        print(
            f"  compared with: run {baseline['run_id']}; {regressions} request(s) regressed; "
            f"{reused} score(s) taken from it (same answer, same scorer)"
        )
    else:
        print("  compared with: nothing yet (first night); run `make demo` again")
    print(f"  report:       {summary['files']['report'].removeprefix('file://')}")
    print(f"  manifest:     {summaries[-1].with_name('manifest.json')}")
    print(f"  full log:     {log_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
