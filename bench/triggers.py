"""P3 and P3+: many batch triggers in one event loop, as on one triggerer, polling every second.

    .venv/bin/python bench/triggers.py                       # every case, 30 s each
    .venv/bin/python bench/triggers.py --cases shared:1000 --seconds 10

Cases (``kind:N``, N triggers each waiting for its own in-progress batch, polling every
second; ``kind:N@S`` polls every S seconds):

- ``shared``: our BatchTrigger, every trigger reading statuses through the shared poller;
- ``unfrozen``: the same with ``AIRFLOW_BATCHES_GC_FREEZE=0``: the start-up heap left in the
  garbage collector's full passes (``jobs/wait/_heap.py``), as before it was frozen;
- ``retrieve``: our BatchTrigger's previous ``run()``, one retrieve per batch per trigger;
- ``official``: ``AnthropicBatchTrigger`` of apache-airflow-providers-anthropic (its hook
  calls the official ``anthropic`` SDK in a thread per poll), installed with Airflow into
  ``.bench-venv/``, never into the project's environment;
- ``startup``: the first trigger of a process as the triggerer starts it: its module imported
  and the trigger built inside the running loop, then its ``run()`` up to the shared poller's
  client (the wait's modules imported in a thread meanwhile), in a fresh process that has
  imported Airflow's triggerer runner first (as a triggerer has), the loop's longest block in
  each step; ``startup-unfrozen`` the same without the heap freeze.

Each case runs in its own process against a fake server (bench/fake_batches.py) in another,
so neither's CPU is the other's. After a warm-up, for ``--seconds``: polls made against the
requested rate (N per second), CPU of the bench process (all its threads) per poll,
event-loop lag seen by a ticker task (how late a 10 ms sleep wakes: p50, p99, max), RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from _venv import official_python  # noqa: E402  (bench/ is a folder of scripts, not a package)

DEFAULT_CASES = "startup,shared:1000,shared:10000,shared:10000@10,retrieve:1000,official:1000"
TICK = 0.01


# --- the child: one case in one process ------------------------------------------------------


class GcPauses:
    """The longest garbage-collector pause: a loop-lag spike may be Python's, not ours. Its
    CPU time too: on a loaded machine the wall clock of a pause is mostly the neighbours'."""

    def __init__(self) -> None:
        import gc

        self.longest, self.total, self._start = 0.0, 0.0, 0.0
        self.longest_cpu, self._start_cpu = 0.0, 0.0
        self.full = 0
        gc.callbacks.append(self)

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start, self._start_cpu = time.perf_counter(), time.process_time()
        else:
            pause = time.perf_counter() - self._start
            self.longest = max(self.longest, pause)
            self.longest_cpu = max(self.longest_cpu, time.process_time() - self._start_cpu)
            self.total += pause
            self.full += info["generation"] == 2


class Ticker:
    """Samples how late the loop wakes a task sleeping ``TICK`` seconds."""

    def __init__(self) -> None:
        self.lags: list[float] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + TICK
            await asyncio.sleep(TICK)
            self.lags.append(max(0.0, loop.time() - due))


def server_calls(url: str) -> dict[str, int]:
    import urllib.request

    with urllib.request.urlopen(f"{url}/_stats", timeout=30) as answer:
        calls: dict[str, int] = json.loads(answer.read())
    return calls


def ours(kind: str, n: int, interval: float, counter: list[int]) -> list[Any]:
    from fake_batches import batch_id

    from airflow_batches._compat import TriggerEvent
    from airflow_batches.jobs.wait import WaitCore, wait_in_triggerer
    from airflow_batches.triggers.batch import BatchTrigger

    class RetrieveEach(BatchTrigger):
        """BatchTrigger.run as it was before the shared poller (kept here to compare)."""

        async def run(self):  # type: ignore[no-untyped-def]
            client = await self._client()
            try:
                event = await wait_in_triggerer(client, self.core, log=self.log)
            finally:
                await client.aclose()
            yield TriggerEvent(event.model_dump(mode="json"))  # type: ignore[no-untyped-call]

    observe = WaitCore.observe

    def counted(self: WaitCore, *args: Any) -> Any:  # one round of polls seen by a trigger
        counter[0] += 1
        return observe(self, *args)

    WaitCore.observe = counted  # type: ignore[method-assign,assignment]  # this process is the bench's
    cls = BatchTrigger if kind in ("shared", "unfrozen") else RetrieveEach
    deadline = time.time() + 3600
    return [
        cls(
            batch_ids=[batch_id(i)],
            conn_id="bench",
            poke_interval=interval,
            max_poke_interval=interval,
            deadline=deadline,
        )
        for i in range(n)
    ]


def official(n: int, interval: float) -> list[Any]:
    from airflow.providers.anthropic.triggers.batch import AnthropicBatchTrigger
    from fake_batches import batch_id

    end = time.time() + 3600
    return [
        AnthropicBatchTrigger(
            conn_id="bench", batch_id=batch_id(i), poll_interval=interval, end_time=end
        )
        for i in range(n)
    ]


async def drive(trigger: Any) -> Any:
    async for event in trigger.run():
        return event
    return None


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    import gc

    import psutil

    process = psutil.Process()
    counter = [0]
    if args.kind == "official":
        triggers = official(args.n, args.interval)
    else:
        triggers = ours(args.kind, args.n, args.interval, counter)
    rss_before = process.memory_info().rss
    ticker = Ticker()
    tick = asyncio.create_task(ticker.run())
    tasks = [asyncio.create_task(drive(t)) for t in triggers]
    await asyncio.sleep(args.warmup)

    calls0 = await asyncio.to_thread(server_calls, args.url)
    polls0, cpu0, t0 = counter[0], time.process_time(), time.monotonic()
    ticker.lags.clear()
    gc_pauses = GcPauses()
    await asyncio.sleep(args.seconds)
    polls1, cpu1, t1 = counter[0], time.process_time(), time.monotonic()
    lags = sorted(ticker.lags)
    rss = process.memory_info().rss
    calls1 = await asyncio.to_thread(server_calls, args.url)

    ended = [t for t in tasks if t.done()]
    failed = [t.exception() for t in ended if t.exception() is not None]
    if failed:
        raise RuntimeError(f"{len(failed)} triggers failed; the first: {failed[0]!r}")
    for task in [*tasks, tick]:
        task.cancel()
    await asyncio.gather(*tasks, tick, return_exceptions=True)
    calls = {k: calls1[k] - calls0[k] for k in calls1}
    polls = polls1 - polls0 if args.kind != "official" else calls["retrieve"]
    elapsed = t1 - t0
    return {
        "case": f"{args.kind}:{args.n}" + (f"@{args.interval:g}" if args.interval != 1 else ""),
        "seconds": round(elapsed, 2),
        "polls": polls,
        "requested": round(args.n / args.interval * elapsed),
        "rate": polls / (args.n / args.interval * elapsed),
        "cpu_ms_per_poll": (cpu1 - cpu0) * 1000 / max(polls, 1),
        "cpu_share": (cpu1 - cpu0) / elapsed,
        "lag_p50_ms": 1000 * lags[len(lags) // 2] if lags else None,
        "lag_p99_ms": 1000 * lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else None,
        "lag_max_ms": 1000 * lags[-1] if lags else None,
        "gc_max_ms": 1000 * gc_pauses.longest,
        "gc_max_cpu_ms": 1000 * gc_pauses.longest_cpu,
        "gc_full_collections": gc_pauses.full,
        "gc_share": gc_pauses.total / elapsed,
        "gc_frozen_objects": gc.get_freeze_count(),
        "gc_tracked_objects": len(gc.get_objects()),
        "rss_mib": rss / 2**20,
        "rss_before_triggers_mib": rss_before / 2**20,
        "server_calls": calls,
        "ended_early": len(ended),
    }


def startup() -> dict[str, Any]:
    """The first trigger in this fresh process, as a triggerer starts it: the module imported
    and the trigger built inside the running loop, then its ``run()`` until its poller has a
    client; how long the loop was blocked all along."""
    import importlib

    # What a triggerer's runner has loaded before it imports any trigger class.
    import airflow.jobs.triggerer_job_runner  # noqa: F401

    async def first_trigger() -> dict[str, float]:
        ticker = Ticker()
        tick = asyncio.create_task(ticker.run())
        await asyncio.sleep(TICK * 3)
        ticker.lags.clear()
        # A full collection of the heap Airflow's imports left (some 200,000 objects, 0.1 s)
        # may fall due in this time whoever allocates; counted apart so the figure is ours.
        pauses = GcPauses()
        wall, cpu = time.perf_counter(), time.process_time()
        # In the loop, as the triggerer does: import the class, build the trigger.
        module = importlib.import_module("airflow_batches.triggers.batch")
        trigger = module.BatchTrigger(batch_ids=["msgbatch_x"], conn_id="bench")
        imported = time.perf_counter() - wall, time.process_time() - cpu
        await asyncio.sleep(TICK * 2)
        import_block = max(ticker.lags, default=0.0)
        ticker.lags.clear()
        start = time.perf_counter()
        # As BatchTrigger.run starts: the wait's modules (in a thread), the shared poller (the
        # first one freezes the start-up heap, jobs/wait/_heap.py), then its client.
        await module.load_wait()
        from airflow_batches.jobs.wait import shared_poller

        poller = shared_poller("bench", functools.partial(module.connect, "bench"))
        async with poller.subscribe(trigger.batch_ids, max_age=1.0):
            took = time.perf_counter() - start
            await asyncio.sleep(TICK * 2)
        tick.cancel()
        return {
            "import_s": imported[0],
            "import_cpu_s": imported[1],
            "import_loop_block_s": import_block,
            "first_client_s": took,
            "first_client_loop_block_s": max(ticker.lags, default=0.0),
            "gc_during_first_client_s": pauses.total,
        }

    import functools

    figures = asyncio.run(first_trigger())
    wall = time.perf_counter()
    for name in ("jobs.submit", "jobs.results", "jobs.prepare", "api._pricing"):
        importlib.import_module(f"airflow_batches.{name}")
    figures["no_longer_imported_s"] = time.perf_counter() - wall
    return figures


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


class FakeServer:
    def __init__(self, batches: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "fake_batches.py"), "--batches", str(batches)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            self.process.kill()
            raise RuntimeError(f"the fake server did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def run_case(kind: str, n: int, interval: float, args: argparse.Namespace) -> dict[str, Any]:
    python: Path | None = Path(sys.executable)
    if kind == "official":
        python, why = official_python()
        if python is None:
            return {"case": f"{kind}:{n}", "not_run": why}
    server = FakeServer(n)
    home = tempfile.mkdtemp(prefix="bench-triggers-")
    conn_type = "anthropic" if kind == "official" else "message_batches"
    conn = {"conn_type": conn_type, "host": server.url, "password": "bench-key"}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
        "AIRFLOW_HOME": home,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_BENCH": json.dumps(conn),
        "PYTHONPATH": str(ROOT),
    }
    if kind == "unfrozen":
        env["AIRFLOW_BATCHES_GC_FREEZE"] = "0"
    out = Path(home) / "figures.json"
    command = [str(python), str(HERE / "triggers.py"), "--child", kind, "--n", str(n)]
    command += ["--url", server.url, "--out", str(out), "--interval", str(interval)]
    command += ["--seconds", str(args.seconds), "--warmup", str(args.warmup)]
    load = loadavg()
    try:
        with open(Path(home) / "child.log", "w") as log:  # the triggers' own log lines
            code = subprocess.call(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    finally:
        server.stop()
    if code:
        tail = (Path(home) / "child.log").read_text()[-3000:]
        raise RuntimeError(f"case {kind}:{n} failed ({code}):\n{tail}")
    figures: dict[str, Any] = json.loads(out.read_text())
    figures["loadavg_before"], figures["loadavg_after"] = load, loadavg()
    return figures


def run_startup(runs: int, frozen: bool = True) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    if not frozen:
        env["AIRFLOW_BATCHES_GC_FREEZE"] = "0"
    env["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="bench-startup-")
    conn = {"conn_type": "message_batches", "host": "https://127.0.0.1:9", "password": "k"}
    env["AIRFLOW_CONN_BENCH"] = json.dumps(conn)
    samples = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, str(HERE / "triggers.py"), "--child", "startup"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        samples.append(json.loads(done.stdout.strip().splitlines()[-1]))
    case = "startup" if frozen else "startup-unfrozen"
    summary: dict[str, Any] = {"case": case, "runs": runs, "loadavg": loadavg()}
    for key in samples[0]:
        values = [s[key] for s in samples]
        summary[key] = {"median": statistics.median(values), "max": max(values)}
    return summary


def show(figures: dict[str, Any]) -> None:
    case = figures["case"]
    if "not_run" in figures:
        print(f"{case:>15}: not run: {figures['not_run']}")
    elif case.startswith("startup"):
        ms = {k: 1000 * v["median"] for k, v in figures.items() if isinstance(v, dict)}
        print(
            f"{case:>15}: import and trigger built in the loop {ms['import_s']:.0f} ms "
            f"(cpu {ms['import_cpu_s']:.0f} ms, loop blocked {ms['import_loop_block_s']:.0f} ms), "
            f"first client {ms['first_client_s']:.0f} ms of which the loop was blocked "
            f"{ms['first_client_loop_block_s']:.0f} ms, garbage collection of Airflow's heap "
            f"{ms['gc_during_first_client_s']:.0f} ms in that time; submit/fetch/prepare/pricing "
            f"no longer imported: {ms['no_longer_imported_s']:.0f} ms (medians of "
            f"{figures['runs']})"
        )
    else:
        print(
            f"{case:>15}: {figures['polls']:,} polls of {figures['requested']:,} requested "
            f"({100 * figures['rate']:.1f} %), {figures['cpu_ms_per_poll']:.3f} ms CPU/poll "
            f"({100 * figures['cpu_share']:.0f} % of a core), loop lag p50 "
            f"{figures['lag_p50_ms']:.1f} / p99 {figures['lag_p99_ms']:.1f} / max "
            f"{figures['lag_max_ms']:.1f} ms (longest GC pause {figures['gc_max_ms']:.0f} ms, "
            f"{figures['gc_max_cpu_ms']:.0f} ms of CPU), "
            f"RSS {figures['rss_mib']:.0f} MiB; {figures['gc_frozen_objects']:,} objects frozen, "
            f"{figures['gc_tracked_objects']:,} tracked; server calls {figures['server_calls']}; "
            f"load {figures['loadavg_before']}"
        )
    print(json.dumps(figures), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=DEFAULT_CASES)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--startup-runs", type=int, default=5)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child == "startup":
        print(json.dumps(startup()))
        return 0
    if args.child:
        args.kind = args.child
        Path(args.out).write_text(json.dumps(asyncio.run(measure(args))))
        return 0

    print(f"2 cores shared; load average at start {loadavg()}", flush=True)
    for case in args.cases.split(","):
        kind, _, size = case.partition(":")
        n, _, every = size.partition("@")
        if kind in ("startup", "startup-unfrozen"):
            show(run_startup(args.startup_runs, frozen=kind == "startup"))
        else:
            show(run_case(kind, int(n), float(every or args.interval), args))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
