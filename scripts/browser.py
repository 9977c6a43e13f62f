"""A headless Chromium to look at the report: installed from Debian's packages when missing.

    python -m scripts.browser install          # apt-get install chromium if it is missing
    python -m scripts.browser check            # say whether it is there; exit 1 if not
    python -m scripts.browser dump FILE.html   # print the DOM Chromium built from a page

The browser always runs headless, without a sandbox (CI runs as root), a GPU, background
networking, component updates, sync or first-run screens, with a fresh profile in a new
temporary folder that is deleted afterwards. Nothing here starts a long-lived process: each
call runs Chromium once, with a time limit, and waits for it.

Standard library only: this runs before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):  # `python scripts/browser.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts import packages

BROWSER_ENV = "AIRFLOW_BATCHES_CHROMIUM"
PACKAGE = "chromium"
NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
)
TIMEOUT = 120.0

Runner = Callable[..., subprocess.CompletedProcess[bytes]]


def find_browser() -> Path | None:
    """Chromium's executable: ``$AIRFLOW_BATCHES_CHROMIUM``, else the first on PATH."""
    override = os.environ.get(BROWSER_ENV)
    if override:
        return Path(override) if Path(override).is_file() else None
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def install_commands() -> list[list[str]]:
    return packages.install_commands([PACKAGE])


def install(*, run: Runner = subprocess.run, log: Callable[[str], None] = print) -> bool:
    """Install Chromium when it is missing; True if it was installed now.

    Non-interactive; needs root and apt, otherwise the error names the commands to run.
    """
    if find_browser() is not None:
        return False
    packages.apt_install([PACKAGE], run=run, log=log, tag="browser")
    if find_browser() is None:
        raise RuntimeError(f"installed {PACKAGE}, but still cannot find Chromium")
    return True


def ensure_browser(log: Callable[[str], None] = print) -> Path:
    if install(log=log):
        log("browser: installed chromium")
    found = find_browser()
    assert found is not None
    return found


def run_headless(
    page: Path | str,
    *actions: str,
    window: tuple[int, int] = (1280, 2400),
    timeout: float = TIMEOUT,
) -> subprocess.CompletedProcess[bytes]:
    """Run Chromium once on ``page`` (a path or URL) with ``actions`` (``--dump-dom``,
    ``--screenshot=FILE``, ...) and a profile of its own; raises if it fails."""
    browser = ensure_browser()
    url = page if isinstance(page, str) and "://" in page else Path(page).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="airflow-batches-chromium-") as profile:
        command = [
            str(browser),
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={window[0]},{window[1]}",
            *actions,
            str(url),
        ]
        done = subprocess.run(
            command, capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout, check=False
        )
    if done.returncode != 0:
        output = done.stderr.decode(errors="replace")[-2000:]
        raise RuntimeError(f"Chromium exited with {done.returncode}: {output}")
    return done


def dump_dom(page: Path | str) -> str:
    """The DOM Chromium built from ``page``, serialised."""
    return run_headless(page, "--dump-dom").stdout.decode()


def screenshot(page: Path | str, target: Path, window: tuple[int, int] = (1280, 2400)) -> Path:
    """A PNG of ``page`` as Chromium renders it, at ``target``."""
    run_headless(page, f"--screenshot={target}", window=window)
    if not target.is_file() or target.stat().st_size == 0:
        raise RuntimeError(f"Chromium wrote no screenshot at {target}")
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.browser", description=__doc__)
    parser.add_argument("command", choices=["install", "check", "dump"])
    parser.add_argument("page", nargs="?")
    args = parser.parse_args(argv)
    if args.command == "check":
        found = find_browser()
        print(f"Chromium at {found}" if found else "missing: chromium")
        return 0 if found else 1
    if args.command == "install":
        print(f"Chromium at {ensure_browser()}")
        return 0
    if not args.page:
        parser.error("dump needs a page")
    print(dump_dom(args.page))
    return 0


if __name__ == "__main__":
    sys.exit(main())
