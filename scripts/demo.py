"""`make demo`: run the example DAG end to end, offline, against the local emulator.

Everything lives under ./.demo: the Airflow home (SQLite), the emulator's data, the staged
requests and the results (local object storage through ObjectStoragePath).
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
OUR_LOGGERS = ("airflow_batches", "Shard ", "Validated", "batch(es)", "Fetched", "resending")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    port = free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(DEMO / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags_examples"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_BATCHES_RESULTS": f"file://{DEMO / 'results'}",
        "AIRFLOW_BATCHES_STAGING": f"file://{DEMO / 'staging'}",
        "AIRFLOW_CONN_MESSAGE_BATCHES_DEFAULT": json.dumps(
            {
                "conn_type": "message_batches",
                "host": f"http://127.0.0.1:{port}",
                "password": "emulator-key",
            }
        ),
    }
    print(f"Starting the emulator on http://127.0.0.1:{port} ...")
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
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
    return _report(DEMO / "results", log_path)


def _short(line: str) -> str:
    # structlog lines: "<time> [info     ] <message> [logger] loc=..."; keep the message.
    text = line.strip()
    if "] " in text:
        text = text.split("] ", 1)[1]
    if " [airflow" in text:
        text = text.split(" [airflow", 1)[0]
    return text[:160]


def _report(results: Path, log_path: Path) -> int:
    manifests = sorted(results.glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
    if not manifests:
        print(f"\nNo manifest was written; full log: {log_path}")
        return 1
    manifest = json.loads(manifests[-1].read_text())
    print("\nDone.")
    print(f"  results:   {manifest['files']}")
    print(f"  requests:  {manifest['request_count']}  lines: {manifest['lines']}")
    print(f"  counts:    {manifest['counts']}")
    print(f"  attempts:  {len(manifest['attempts'])}  (failed requests resent as follow-ups)")
    print(f"  cost:      ${manifest['cost_usd']:.6f} at batch prices")
    print(f"  cache hit: {manifest['cache_hit_rate']}")
    print(f"  manifest:  {manifests[-1]}")
    print(f"  full log:  {log_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
