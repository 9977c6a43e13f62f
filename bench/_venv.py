"""The bench's own virtualenv, ``.bench-venv/``: the official provider and SDK, side by side
with ours but never in the project's environment.

Made on first use with the project's ``constraints.txt`` (so the SDK is the version the
emulator's conformance tests pin); a stamp records what was installed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_VENV = ROOT / ".bench-venv"
OFFICIAL = ["apache-airflow==3.3.2", "apache-airflow-providers-anthropic==1.2.0"]
"""The official provider with the Airflow it runs on; it brings the ``anthropic`` SDK."""


def official_python() -> tuple[Path | None, str]:
    """The bench venv's python, made on first use; None and why when it cannot be made."""
    python = BENCH_VENV / "bin" / "python"
    stamp = BENCH_VENV / ".official"
    if stamp.exists() and stamp.read_text() == " ".join(OFFICIAL):
        return python, "ready"
    print(f"(installing {' '.join(OFFICIAL)} into {BENCH_VENV} ...)", flush=True)
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "-c", str(ROOT / "constraints.txt"), *OFFICIAL], check=True)
    except subprocess.CalledProcessError as exc:
        return None, f"could not install the official provider: {exc}"
    stamp.write_text(" ".join(OFFICIAL))
    return python, "installed"
