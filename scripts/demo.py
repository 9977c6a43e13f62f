"""`make demo`: a smoke run until the full example DAG lands."""

from __future__ import annotations

import subprocess
import sys


def main() -> int:
    out = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "list"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    line = next((ln for ln in out.splitlines() if "airflow-batches" in ln), None)
    print(line or "provider not found")
    return 0 if line else 1


if __name__ == "__main__":
    raise SystemExit(main())
