"""The virtualenv of real third-party clients, ``.clients-venv/``: tools no one here wrote,
run unchanged against the emulator (``tests/emulator/test_real_clients.py``), never installed
in the project's own environment nor among the package's dependencies.

    python -m scripts.client_venv     # build it now (the tests build it on first use)

It holds Inspect AI and the newest official SDK, at the exact versions of
``constraints/clients.txt`` (a ``pip freeze`` of a working venv), so a fresh clone resolves the
same set from PyPI without backtracking. A stamp records what was installed: a change to the
package list or to the constraints file rebuilds it; otherwise it is reused (the folder is
git-ignored). A lock file lets one process build while others wait.

Standard library only: this runs with any Python 3.11.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIENTS_VENV = ROOT / ".clients-venv"
CONSTRAINTS = ROOT / "constraints" / "clients.txt"
CLIENTS = ("inspect-ai==0.3.285", "anthropic==2.17.0")
"""Inspect AI (an eval framework with a batch mode) and the newest official SDK it runs on."""


class ClientVenvError(RuntimeError):
    """The virtualenv could not be built; the message says which step failed and why."""


def stamp_of(packages: Sequence[str], constraints: Path) -> str:
    digest = hashlib.sha256(constraints.read_bytes()).hexdigest()
    return " ".join(packages) + f"\nconstraints sha256 {digest}\n"


def clients_python(
    venv: Path = CLIENTS_VENV,
    packages: Sequence[str] = CLIENTS,
    constraints: Path = CONSTRAINTS,
    *,
    base_python: str = sys.executable,
) -> Path:
    """The venv's python, built first when missing or stale.

    Builds from PyPI with pip's own defaults (no prompt: it runs under CI=true with no stdin,
    as root too). Raises :class:`ClientVenvError` when a step fails.
    """
    python = venv / "bin" / "python"
    stamp_file = venv / ".installed"
    wanted = stamp_of(packages, constraints)
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists() and stamp_file.exists() and stamp_file.read_text() == wanted:
            return python
        # A stale or half-built venv is rebuilt from nothing: no leftover package survives.
        shutil.rmtree(venv, ignore_errors=True)
        print(f"(building {venv.name}: {' '.join(packages)} ...)", file=sys.stderr, flush=True)
        _run([base_python, "-m", "venv", str(venv)], "create the virtualenv")
        env = {**os.environ, "PIP_ROOT_USER_ACTION": "ignore", "PIP_NO_INPUT": "1"}
        env.pop("PYTHONPATH", None)
        install = [str(python), "-m", "pip", "install", "--quiet", "-c", str(constraints)]
        _run([*install, *packages], "install the clients", env=env)
        stamp_file.write_text(wanted)
        return python


def _run(command: list[str], step: str, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(
        command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-20:])
        raise ClientVenvError(
            f"could not {step} ({' '.join(command[:4])} ... exited {result.returncode}):\n{tail}"
        )


if __name__ == "__main__":
    print(clients_python())
