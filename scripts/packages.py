"""Finding the PostgreSQL and Redis servers, and installing them from Debian's packages when
they are missing (``scripts/services.py`` runs them; ``scripts/browser.py`` installs Chromium
with the same ``apt_install``).

Standard library only: this runs before any virtualenv exists.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

# Where Debian puts the server binaries (they are not on PATH); overridable for other systems.
PG_BINDIR_ENV = "AIRFLOW_BATCHES_PG_BINDIR"
REDIS_SERVER_ENV = "AIRFLOW_BATCHES_REDIS_SERVER"
PG_GLOB = "/usr/lib/postgresql/*/bin"
PACKAGES = {"postgresql": "postgresql", "redis": "redis-server"}

Runner = Callable[..., subprocess.CompletedProcess[bytes]]


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path.parent.name))


def postgres_bindir() -> Path | None:
    """The newest PostgreSQL server's ``bin`` folder (with ``initdb`` and ``postgres``)."""
    override = os.environ.get(PG_BINDIR_ENV)
    candidates = [Path(override)] if override else sorted(Path("/").glob(PG_GLOB.lstrip("/")))
    usable = [d for d in candidates if (d / "initdb").is_file() and (d / "postgres").is_file()]
    return max(usable, key=_version_key) if usable else None


def redis_server() -> Path | None:
    override = os.environ.get(REDIS_SERVER_ENV)
    if override:
        return Path(override) if Path(override).is_file() else None
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").is_file() else None
    )
    return Path(found) if found else None


def missing_packages() -> list[str]:
    """The Debian packages to install for the servers that are not there."""
    missing = []
    if postgres_bindir() is None:
        missing.append(PACKAGES["postgresql"])
    if redis_server() is None:
        missing.append(PACKAGES["redis"])
    return missing


def install_commands(packages: Sequence[str]) -> list[list[str]]:
    """What :func:`install` runs: refresh the package lists, then install without questions."""
    if not packages:
        return []
    return [
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
    ]


def install(
    packages: Sequence[str] | None = None,
    *,
    run: Runner = subprocess.run,
    log: Callable[[str], None] = print,
) -> list[str]:
    """Install the missing servers from Debian's packages; returns the packages installed.

    Non-interactive (no standard input, ``DEBIAN_FRONTEND=noninteractive``). Needs root and
    apt; otherwise the error names the command to run by hand.
    """
    packages = missing_packages() if packages is None else list(packages)
    if not packages:
        return []
    apt_install(packages, run=run, log=log, tag="services")
    still = missing_packages()
    if still:
        raise RuntimeError(f"installed {packages}, but still cannot find {still}")
    return packages


def apt_install(
    packages: Sequence[str],
    *,
    run: Runner = subprocess.run,
    log: Callable[[str], None] = print,
    tag: str = "services",
) -> None:
    """``apt-get update`` then ``apt-get install`` of ``packages``, without questions (no
    standard input, ``DEBIAN_FRONTEND=noninteractive``). Needs root and apt; otherwise, and
    when a command fails, the error names the commands to run by hand."""
    commands = install_commands(packages)
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(
            f"missing {', '.join(packages)}; install them as root: "
            + " && ".join(" ".join(c) for c in commands)
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in commands:
        log(f"{tag}: {' '.join(command)}")
        done = run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=False)
        if done.returncode != 0:
            output = (done.stdout or b"").decode(errors="replace")
            output += (done.stderr or b"").decode(errors="replace")
            raise RuntimeError(
                f"`{' '.join(command)}` exited with {done.returncode}:\n{output[-3000:]}"
            )


def ensure_installed(log: Callable[[str], None] = print) -> None:
    installed = install(log=log)
    if installed:
        log(f"services: installed {', '.join(installed)}")
