"""Start servers as children that cannot outlive us, and stop them by process id.

Shared by the service scripts (``scripts/services.py``) and the live-stack harnesses under
``tests/e2e``. Standard library only, so it runs before any virtualenv exists.

Every server starts in a session of its own. Stopping sends SIGTERM to that session, waits,
then SIGKILLs whatever of it is still alive: the server and everything it spawned (workers,
task processes, a postmaster's backends), found through ``/proc`` even after re-parenting.
On Linux each server also gets SIGTERM if the process that started it dies, so a killed test
run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

_PR_SET_PDEATHSIG = 1


class ProcessId(NamedTuple):
    """A process, told apart from a later one that reuses its pid by its start time."""

    pid: int
    start_ticks: int


@dataclass(frozen=True)
class _Stat:
    state: str
    ppid: int
    session: int
    start_ticks: int


def _stat(pid: int) -> _Stat | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
        # The command name (field 2) may contain spaces and parentheses; everything after the
        # last ")" is plain space-separated fields, starting with field 3.
        fields = raw[raw.rindex(")") + 2 :].split()
        return _Stat(
            state=fields[0],
            ppid=int(fields[1]),
            session=int(fields[3]),
            start_ticks=int(fields[19]),
        )
    except (OSError, ValueError, IndexError):
        # The process exited while we looked.
        return None


def has_proc() -> bool:
    return Path("/proc/self/stat").exists()


def is_alive(proc: ProcessId) -> bool:
    """True while ``proc`` runs; zombies count as gone (only their exit status is left)."""
    if has_proc():
        st = _stat(proc.pid)
        return st is not None and st.state != "Z" and st.start_ticks == proc.start_ticks
    try:
        os.kill(proc.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def alive(procs: Iterable[ProcessId]) -> set[ProcessId]:
    """The members of ``procs`` that are still running."""
    return {p for p in procs if is_alive(p)}


def process_family(leaders: Iterable[int]) -> set[ProcessId]:
    """Every living process that belongs to the leaders' sessions or descends from them.

    Each server starts in a session of its own. Sessions survive re-parenting, so they still
    find a grandchild whose parent died; the parent links catch the rare child that started a
    session of its own (e.g. a subprocess started with ``start_new_session``).
    """
    leaders = set(leaders)
    if not has_proc():
        return {ProcessId(pid, 0) for pid in leaders if is_alive(ProcessId(pid, 0))}
    stats: dict[int, _Stat] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None and st.state != "Z":
            stats[int(entry)] = st
    family = {pid for pid, st in stats.items() if st.session in leaders or pid in leaders}
    grew = True
    while grew:
        found = {pid for pid, st in stats.items() if st.ppid in family} - family
        family |= found
        grew = bool(found)
    return {ProcessId(pid, stats[pid].start_ticks) for pid in family}


def _load_prctl() -> object:
    if sys.platform != "linux":
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Resolved before any fork: loading a library in the forked child is not safe.
_PRCTL = _load_prctl()


def die_with_parent() -> None:
    """``preexec_fn``: the child gets SIGTERM when the thread that started it ends.

    It runs in the child between fork and exec (after any change of user). If the starting
    process is killed outright (a CI timeout, SIGKILL), the server takes its own children down
    with it instead of living on as an orphan. Start servers from a thread that outlives them
    (the main one).
    """
    if callable(_PRCTL):
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, *, timeout: float, check: object = None) -> None:
    """Wait until something accepts connections on 127.0.0.1:``port``.

    ``check`` (a ``subprocess.Popen``) fails the wait early when the server exits.
    """
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        if isinstance(check, subprocess.Popen) and check.poll() is not None:
            raise RuntimeError(f"the server exited with code {check.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f}s")
        time.sleep(0.1)


def spawn(
    args: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``args`` in a session of its own, stdout and stderr to ``log_path``.

    ``user`` runs it as that user (we must be root). The log file is closed in the parent once
    the child holds it.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            list(args),
            env=None if env is None else dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
            user=user,
        )


def signal_group(popen: subprocess.Popen[bytes], sig: int) -> None:
    """Send ``sig`` to the session (process group) a :func:`spawn`-ed process leads."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, sig)


def wait_gone(
    popens: Iterable[subprocess.Popen[bytes]], family: Iterable[ProcessId], timeout: float
) -> bool:
    """True once every leader has exited (and been reaped) and no member of ``family`` lives."""
    popens, family = list(popens), list(family)
    deadline = time.monotonic() + timeout
    while True:
        for popen in popens:
            popen.poll()  # reap, so a finished leader is not counted as a zombie
        if not alive(family) and all(p.returncode is not None for p in popens):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def stop(
    popens: Iterable[subprocess.Popen[bytes]],
    *,
    grace: float = 10.0,
    sig: int = signal.SIGTERM,
    family: Iterable[ProcessId] = (),
) -> set[ProcessId]:
    """Stop servers and everything they spawned; returns the processes that were seen.

    ``sig`` goes to each server's process group first so it can shut down its own children
    cleanly; whatever is still alive after ``grace`` seconds is SIGKILLed, leaders first, then
    every process of theirs found at any point (``family`` adds ones seen earlier).
    """
    popens = list(popens)
    seen = set(family) | process_family(p.pid for p in popens if p.poll() is None)
    for popen in popens:
        signal_group(popen, sig)
    if not wait_gone(popens, seen, grace):
        seen |= process_family(p.pid for p in popens if p.poll() is None)
        for popen in popens:
            signal_group(popen, signal.SIGKILL)
        for proc in alive(seen):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(proc.pid, signal.SIGKILL)
        wait_gone(popens, seen, 5.0)
    for popen in popens:
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=5)
    return seen


def kill_family(popen: subprocess.Popen[bytes]) -> set[ProcessId]:
    """SIGKILL a server and every process of its, at once: a machine lost, not a shutdown."""
    family = process_family([popen.pid])
    for proc in family:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(proc.pid, signal.SIGKILL)
    wait_gone([popen], family, 10.0)
    return family


def wait_for_signal(check: Callable[[], None] | None = None, *, interval: float = 1.0) -> None:
    """Block until SIGINT (Ctrl-C) or SIGTERM; ``check`` runs meanwhile and may raise."""
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stopping:
        if check is not None:
            check()
        time.sleep(interval)
