"""`make bench`: every benchmark script, each printing its own figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    ["compare.py"],
    ["validation.py"],
    ["bench_scan.py", "--mb", "100"],
    ["job_scale.py", "--requests", "100000", "--prompt-bytes", "2000"],
    ["job_scale.py", "--requests", "250000", "--prompt-bytes", "1000"],
    ["emulator_scale.py"],
    ["estimate_accuracy.py"],
    ["triggers.py"],
]


def main() -> int:
    for script, *args in SCRIPTS:
        print(f"\n=== {script} {' '.join(args)}", flush=True)
        code = subprocess.call([sys.executable, str(HERE / script), *args])
        if code:
            return code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
