"""Fault soak: the example workflow, run again and again against an emulator that faults
about a fifth of the calls on every endpoint.

Each run is ``airflow dags test`` of ``dags_examples/nightly_eval.py`` in its own process (the
retries the example DAG sets, a short retry delay; ``--size`` questions for each of its three
models; no cross-run cache, so every run sends everything), against one emulator that answers
429, 500 and 529, drops connections before and after handling, cuts results downloads, ends 5 %
of the requests ``overloaded_error`` (which the fetch resends), and answers the eval set with
its eval responder (so the evaluation's thresholds can pass). It prints:

* runs completed, out of runs;
* batches created (the emulator's count) against batches the manifests name, and the
  possible orphans the registry settled: duplicates are batches paid for that no manifest
  names and no orphan record explains;
* result lines against requests (lost);
* seconds.

    python bench/fault_soak.py --runs 20 [--fault-rate 0.2] [--size 30]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from airflow_batches.emulator.config import Endpoint, FaultRates

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DAG_ID = "message_batches_nightly_eval"
MODELS = 3
"""Models of the example DAG's matrix: each question is a request per model."""
ENDPOINTS: tuple[Endpoint, ...] = ("create", "retrieve", "list", "results", "cancel")


def faults(rate: float) -> dict[Endpoint | Literal["*"], FaultRates]:
    """``rate`` of the calls of every endpoint faulted, spread over every kind of fault."""
    from airflow_batches.emulator.config import FaultRates

    share = {"rate_429": 0.25, "rate_500": 0.2, "rate_529": 0.2, "rate_drop": 0.15}
    out: dict[Endpoint | Literal["*"], FaultRates] = {}
    for endpoint in ENDPOINTS:
        kinds = dict(share)
        kinds["rate_cut" if endpoint == "results" else "rate_drop_after"] = 0.2
        rates = {k: round(rate * v, 4) for k, v in kinds.items()}
        out[endpoint] = FaultRates.model_validate({**rates, "retry_after": 0.2})
    return out


def soak(runs: int, rate: float, size: int, work: Path, seed: int) -> dict[str, Any]:
    from airflow_batches.emulator.config import EmulatorConfig
    from airflow_batches.emulator.testing import serve_emulator
    from airflow_batches.jobs.submit import Registry

    config = EmulatorConfig(
        latency=0.005,
        workers=8,
        faults=faults(rate),
        result_errors={"overloaded_error": 0.05},
        seed=seed,
        responder="airflow_batches.emulator.evalset:eval_responder",
        responder_options={"error_rates": {"claude-haiku-4-5": 0.1}},
    )
    results, staging = work / "results", work / "staging"
    with serve_emulator(config, data_dir=work / "emulator") as emulator:
        env = {
            **os.environ,
            "AIRFLOW_HOME": str(work / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags_examples"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "1",
            "AIRFLOW_BATCHES_RESULTS": f"file://{results}",
            "AIRFLOW_BATCHES_STAGING": f"file://{staging}",
            "AIRFLOW_CONN_MESSAGE_BATCHES_DEFAULT": json.dumps(
                {
                    "conn_type": "message_batches",
                    "host": emulator.base_url,
                    "password": emulator.api_key,
                }
            ),
        }
        subprocess.run(
            [str(BIN / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True
        )
        began = time.monotonic()
        completed = 0
        logs = work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for i in range(runs):
            with (logs / f"run-{i}.log").open("w") as log:
                code = subprocess.run(
                    [
                        str(BIN / "airflow"),
                        "dags",
                        "test",
                        DAG_ID,
                        "-c",
                        json.dumps({"size": size}),
                    ],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=900,
                ).returncode
            completed += code == 0
            print(f"  run {i + 1}/{runs}: {'ok' if code == 0 else f'FAILED (see {log.name})'}")
        seconds = time.monotonic() - began
        created = emulator.admin.batches_created()
        stats = emulator.admin.stats()
    manifests = [json.loads(p.read_text()) for p in results.glob("*/manifest.json")]
    named = {b for m in manifests for b in m["batch_ids"]}
    replaced = {b for m in manifests for a in m["attempts"] for b in a.get("replaced", [])}
    # The registry reads its own layout (a folder per day, and older entries without one).
    registries = [Registry(scope) for scope in (staging / "_registry").glob("*")]
    explained = {o.batch_id for r in registries for o in r.orphans()} | replaced
    requests = sum(m["request_count"] for m in manifests)
    lines = sum(m["lines"] for m in manifests)
    faulted = {e: sum(v.get("faults", {}).values()) for e, v in stats["endpoints"].items()}
    calls = {e: v.get("calls", 0) for e, v in stats["endpoints"].items()}
    return {
        "runs": runs,
        "completed": completed,
        "batches_created": created,
        "batches_named": len(named),
        "possible_orphans": len(explained),
        "duplicates": max(0, created - len(named) - len(explained)),
        "requests": requests,
        "lines": lines,
        "lost": requests - lines + size * MODELS * (runs - len(manifests)),
        "seconds": round(seconds, 1),
        "faulted_calls": faulted,
        "calls": calls,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--size", type=int, default=30, help="questions (each sent to 3 models)")
    parser.add_argument("--work", type=Path, default=None, help="keep everything here")
    parser.add_argument("--seed", type=int, default=None, help="the emulator's (default: random)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    with tempfile.TemporaryDirectory(prefix="fault-soak-") as tmp:
        work = args.work or Path(tmp)
        print(
            f"Fault soak: {args.runs} run(s), {args.fault_rate:.0%} of calls faulted, seed {seed}"
        )
        figures = soak(args.runs, args.fault_rate, args.size, work, seed)
    share = {
        e: f"{figures['faulted_calls'].get(e, 0)}/{n}" for e, n in figures["calls"].items() if n
    }
    print(
        f"runs completed {figures['completed']}/{figures['runs']}; "
        f"batches created {figures['batches_created']} vs named by manifests "
        f"{figures['batches_named']} (+{figures['possible_orphans']} recorded orphans): "
        f"duplicates {figures['duplicates']}; result lines {figures['lines']} for "
        f"{figures['requests']} requests: lost {figures['lost']}; {figures['seconds']} s"
    )
    print(f"faulted calls per endpoint: {share}")
    print("FIGURES " + json.dumps(figures))
    ok = (
        figures["completed"] == figures["runs"]
        and not figures["duplicates"]
        and not figures["lost"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
