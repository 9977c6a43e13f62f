"""Side by side on one machine: our path, the official SDK's, and curl moving the same bytes.

    .venv/bin/python bench/compare.py                  # P1: 100,000 requests, ~191 MB
    .venv/bin/python bench/compare.py --requests 50 --rounds 1 --prompt-bytes 10   # smoke

Starts ``bench/sink.py`` (reads and drops a create body) and runs every contender of every
case in its own process, interleaved A/B: round 1 runs ours, sdk, floor, curl; round 2 sdk,
floor, curl, ours; and so on, at least 3 rounds by default. It prints, per contender, the
median seconds, MB/s of the input, the median peak RSS of its process (``wait4``), the ratio
to curl, and each run. Python contenders time their own work (imports and interpreter start
excluded); curl is timed from outside, start-up included.

**P1, submit.** ``ours``: what ``SubmitBatchOperator`` runs: validate and stage the JSONL file
(``stage_requests``), then create the batch through ``JobSubmitter`` (the staged file streamed
as the body). ``sdk``: the official ``anthropic`` SDK: the JSONL read with ``json.loads`` into
the list the official provider hands to ``client.messages.batches.create(requests=...)``, then
that call. ``curl``: the exact create body ours sends, posted from a file (the wire limit).

**floor** (both cases, ``_floors.py``): the least any Python path can do with the same bytes,
every check left out. When the floor alone is past a case's target ratio (3x curl for P1,
1.5x for P2, issue 15), the line under the table says so.

**Adding a case** (P2, fetch): write a ``Case`` (a name, a function that builds its inputs in
the work folder, and its contenders: a ``--child`` mode of this script, whose work goes in
``_contenders.CHILDREN``, or a command such as curl), give the sink the results file it must
serve (``Sink.results``), and add it to ``CASES``. The rounds, medians, RSS and the table come
for free.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _contenders import CHILDREN  # noqa: E402
from _inputs import API_KEY, write_requests, write_results  # noqa: E402  (bench/ is a folder of scripts, not a package)
from _venv import BENCH_VENV, official_python  # noqa: E402

# --- the cases ------------------------------------------------------------------------------


@dataclass
class Context:
    work: Path
    base_url: str
    args: argparse.Namespace
    files: dict[str, Path] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    sdk_python: Path = Path(sys.executable)
    """The interpreter of the SDK's contenders: the bench venv's (``--sdk-python``)."""


Command = Callable[[Context], list[str]]


@dataclass
class Case:
    name: str
    title: str
    build: Callable[[Context], None]
    """Writes the case's inputs under ``ctx.work`` and records them in ``ctx.files``."""
    contenders: dict[str, Command]
    input_file: str
    """The file whose size the MB/s figures divide by."""
    expect_bodies: Callable[[Context, str], int | None] = lambda ctx, name: None
    """The create body size the sink must have received from one run (None: not checked)."""
    creates: int = 1
    """Create calls one run makes (0 for a fetch)."""
    target: float | None = None
    """Issue 15's bound on ours, as a multiple of curl's time."""


def child(mode: str) -> Command:
    def command(ctx: Context) -> list[str]:
        python = ctx.sdk_python if mode.endswith("-sdk") else Path(sys.executable)
        return [
            str(python),
            str(Path(__file__).resolve()),
            "--child",
            mode,
            "--work",
            str(ctx.work),
            "--base-url",
            ctx.base_url,
        ]

    return command


def build_p1(ctx: Context) -> None:
    """The input JSONL and the exact create body it becomes (no defaults: sent as written)."""
    path = ctx.work / "p1-requests.jsonl"
    body = ctx.work / "p1-body.json"
    write_requests(path, ctx.args.requests, ctx.args.prompt_bytes)
    with path.open("rb") as lines, body.open("wb") as out:
        out.write(b'{"requests":[')
        for n, line in enumerate(lines):
            out.write((b"," if n else b"") + line.rstrip(b"\n"))
        out.write(b"]}")
    ctx.files.update(p1_input=path, p1_body=body)


def curl_p1(ctx: Context) -> list[str]:
    return [
        "curl",
        "-sS",
        "--fail",
        "-o",
        os.devnull,
        "-X",
        "POST",
        "-T",
        str(ctx.files["p1_body"]),
        "-H",
        "Expect:",
        "-H",
        "content-type: application/json",
        "-H",
        f"x-api-key: {API_KEY}",
        "-H",
        "anthropic-version: 2023-06-01",
        f"{ctx.base_url}/v1/messages/batches",
    ]


def p1_body_size(ctx: Context, contender: str) -> int | None:
    # ours and curl send the same bytes; the SDK encodes the requests itself.
    return None if contender == "sdk" else ctx.files["p1_body"].stat().st_size


def build_p2(ctx: Context) -> None:
    """The results file the sink serves (for any batch id)."""
    path = ctx.work / "p2-results.jsonl"
    write_results(path, ctx.args.requests, ctx.args.result_bytes)
    ctx.files.update(p2_results=path)


def curl_p2(ctx: Context) -> list[str]:
    return [
        "curl",
        "-sS",
        "--fail",
        "-o",
        str(ctx.work / "p2-curl.jsonl"),
        "-H",
        f"x-api-key: {API_KEY}",
        f"{ctx.base_url}/v1/messages/batches/msgbatch_p2/results",
    ]


CASES = {
    "P1": Case(
        name="P1",
        title="submit",
        build=build_p1,
        contenders={
            "ours": child("p1-ours"),
            "sdk": child("p1-sdk"),
            "floor": child("p1-floor"),
            "curl": curl_p1,
        },
        input_file="p1_input",
        expect_bodies=p1_body_size,
        target=3.0,
    ),
    "P2": Case(
        name="P2",
        title="fetch to a file, with the manifest's scan",
        build=build_p2,
        contenders={
            "ours": child("p2-ours"),
            "sdk": child("p2-sdk"),
            "floor": child("p2-floor"),
            "curl": curl_p2,
        },
        input_file="p2_results",
        creates=0,
        target=1.5,
    ),
}


# --- the runner -----------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    rss_mib: float
    extra: dict[str, Any]


def run_measured(command: list[str]) -> Run:
    """Run one contender; its peak RSS is the high-water mark of its own memory (VmHWM).

    A Python contender reads its own at the end; for others it is polled every 10 ms.
    (``ru_maxrss`` would not do: Linux carries the parent's peak into a child across exec.)
    """
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    polled = 0.0
    while process.poll() is None:
        polled = max(polled, peak_rss_mib(process.pid))
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    out, err = process.communicate()
    if process.returncode:
        raise RuntimeError(f"{command[:4]} failed ({process.returncode}): {err.decode()[-2000:]}")
    extra: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1]) if out.strip() else {}
    seconds = float(extra.pop("seconds", elapsed))
    return Run(seconds, float(extra.pop("rss_mib", polled)), extra)


def peak_rss_mib(pid: int | str = "self") -> float:
    """VmHWM of a process in MiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class SinkProcess:
    def __init__(self, results: Path | None = None) -> None:
        command = [sys.executable, str(HERE / "sink.py")]
        if results is not None:
            command += ["--results", str(results)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.startswith("listening "):
            self.process.kill()
            raise RuntimeError(f"the sink did not start: {line!r}")
        self.base_url = line.split(" ", 1)[1]

    def bodies(self) -> list[int]:
        with urllib.request.urlopen(f"{self.base_url}/_sink/bodies") as answer:
            sizes: list[int] = json.load(answer)["bodies"]
        return sizes

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, load average {load:.2f} at start"
    )


def run_case(case: Case, ctx: Context, sink: SinkProcess, rounds: int) -> dict[str, Any]:
    contenders = dict(case.contenders)
    if shutil.which("curl") is None:
        contenders = {k: v for k, v in contenders.items() if k != "curl"}
        print("  (curl not found: no wire-limit figure)")
    names = list(contenders)
    runs: dict[str, list[Run]] = {name: [] for name in names}
    for round_ in range(rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            before = len(sink.bodies())
            runs[name].append(run_measured(contenders[name](ctx)))
            bodies = sink.bodies()[before:]
            expected = case.expect_bodies(ctx, name)
            if len(bodies) != case.creates or (expected is not None and bodies[0] != expected):
                raise RuntimeError(f"{case.name}/{name}: the sink received bodies {bodies}")
    size = ctx.files[case.input_file].stat().st_size
    curl = statistics.median(r.seconds for r in runs["curl"]) if "curl" in runs else None
    summary: dict[str, Any] = {"input_mb": size / 1e6, "contenders": {}}
    print(f"  {'':8} {'median s':>9} {'MB/s':>8} {'peak RSS':>10} {'vs curl':>8}   runs (s)")
    for name in names:
        seconds = statistics.median(r.seconds for r in runs[name])
        rss = statistics.median(r.rss_mib for r in runs[name])
        ratio = f"{seconds / curl:.2f}x" if curl else "-"
        each = " ".join(f"{r.seconds:.2f}" for r in runs[name])
        rss_text = f"{rss:.1f} MiB" if rss else "n/a"
        print(
            f"  {name:8} {seconds:9.2f} {size / 1e6 / seconds:8.1f} {rss_text:>10} {ratio:>8}"
            f"   {each}"
        )
        parts = {
            key: statistics.median(float(r.extra[key]) for r in runs[name])
            for key in runs[name][0].extra
        }
        if parts:
            print("  " + " " * 9 + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()))
        summary["contenders"][name] = {"seconds": seconds, "rss_mib": rss, **parts}
    if "ours" in runs and "validate_stage_s" in summary["contenders"]["ours"]:
        ours = summary["contenders"]["ours"]
        print(
            f"  validation (validate + stage) of ours: {size / 1e6 / ours['validate_stage_s']:.0f}"
            f" MB/s of wall clock, {size / 1e6 / ours['validate_stage_cpu_s']:.0f} MB/s of CPU"
            " time (both threads; the measure that holds on a loaded machine)"
        )
    if "ours" in runs and "sdk" in runs:
        ours, sdk = summary["contenders"]["ours"], summary["contenders"]["sdk"]
        print(f"  sdk / ours: {sdk['seconds'] / ours['seconds']:.1f}x the time")
    if case.target and curl and "floor" in runs:
        print(target_line(case.target, curl, summary["contenders"]))
    if "ours" in runs and "floor" in runs:
        print(floor_line(runs["ours"], runs["floor"]))
    return summary


FLOOR_TARGET = 1.5
"""Issue 31: ours at most this many times the floor, every check kept."""


def floor_line(ours: list[Any], floor: list[Any]) -> str:
    """Ours against the floor: the ratio of the medians, and the median of each round's own
    ratio (the two ran back to back in a round, so a round's load weighs on both)."""
    by_median = statistics.median(r.seconds for r in ours) / statistics.median(
        r.seconds for r in floor
    )
    paired = statistics.median(o.seconds / f.seconds for o, f in zip(ours, floor, strict=False))
    verdict = "met" if max(by_median, paired) <= FLOOR_TARGET else "not met"
    cpu = ""
    if all("cpu_s" in r.extra for r in (*ours, *floor)):
        of_cpu = statistics.median(float(r.extra["cpu_s"]) for r in ours) / statistics.median(
            float(r.extra["cpu_s"]) for r in floor
        )
        cpu = f", {of_cpu:.2f}x of CPU time (medians: what a loaded machine stretches least)"
    return (
        f"  ours / floor: {by_median:.2f}x (medians), {paired:.2f}x (median of the rounds'"
        f" ratios){cpu}; target at most {FLOOR_TARGET:g}x of the time: {verdict}"
    )


def target_line(target: float, curl: float, contenders: dict[str, Any]) -> str:
    """Where ours and the floor stand against the case's target of ``target`` times curl."""
    budget = target * curl
    floor, ours = contenders["floor"]["seconds"], contenders["ours"]["seconds"]
    verdict = "met" if ours <= budget else "not met"
    reach = (
        f"the floor alone takes {floor / budget:.1f}x the time allowed, so no tuning of the"
        " checks can meet it here"
        if floor > budget
        else f"the floor leaves {budget - floor:.2f} s for every check"
    )
    return (
        f"  target {target:g}x curl = {budget:.2f} s: ours {ours:.2f} s, {verdict}; floor"
        f" (no checks) {floor:.2f} s = {floor / curl:.2f}x curl; {reach}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cases", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES)
    )
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--prompt-bytes", type=int, default=1769, help="191 MB at 100,000")
    parser.add_argument("--result-bytes", type=int, default=2900, help="321 MB at 100,000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, help="a folder for the inputs (default: a temp one)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--sdk-python",
        choices=("bench", "self"),
        default="bench",
        help="run the official SDK from the bench's own virtualenv (.bench-venv, made on first "
        "use; the default) or from this interpreter (`self`: the SDK the tests pin)",
    )
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        answer = CHILDREN[args.child](args.work, args.base_url)
        print(json.dumps({**answer, "rss_mib": peak_rss_mib()}))
        return 0

    print(f"machine: {machine()}")
    work = Path(tempfile.mkdtemp(prefix="bench-compare-", dir=args.work))
    ctx = Context(work=work, base_url="", args=args)
    if args.sdk_python == "bench":
        python, why = official_python()
        if python is None:
            print(f"(the SDK runs from this interpreter: {why})")
        else:
            ctx.sdk_python = python
            print(f"the official SDK runs from {BENCH_VENV} ({why})")
    cases = [CASES[name.strip()] for name in args.cases.split(",")]
    for case in cases:
        case.build(ctx)
    sink = SinkProcess(ctx.files.get("p2_results"))
    ctx.base_url = sink.base_url
    figures: dict[str, Any] = {"machine": machine(), "cases": {}}
    try:
        for case in cases:
            size = ctx.files[case.input_file].stat().st_size
            print(
                f"\n{case.name} {case.title}: {args.requests:,} requests, {size / 1e6:.1f} MB, "
                f"{args.rounds} round(s), interleaved"
            )
            figures["cases"][case.name] = run_case(case, ctx, sink, args.rounds)
    finally:
        sink.stop()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
