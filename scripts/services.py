"""PostgreSQL and Redis for the distributed live stack: installed when missing, run privately.

    python -m scripts.services install    # apt-get install what is missing (needs root)
    python -m scripts.services check      # say what is missing; exit 1 if anything is
    python -m scripts.services up         # run both until Ctrl-C, printing their URLs

Each server listens on 127.0.0.1 only, on a free port, with its data in a new temporary
folder, and is stopped by process id (``scripts/processes.py``). Nothing touches a system
cluster or service: ``apt-get`` may install one, but we never start, stop or read it.

PostgreSQL refuses to run as root. Run as root (CI), the server runs as the ``postgres`` user
the Debian package creates, on a data folder that user owns (not under a root-only temporary
folder, which it could not reach). Run as anyone else, it runs as that user.

Standard library only: this runs before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # `python scripts/services.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.packages import (
    PG_BINDIR_ENV,
    REDIS_SERVER_ENV,
    apt_install,
    ensure_installed,
    install,
    install_commands,
    missing_packages,
    postgres_bindir,
    redis_server,
)
from scripts.processes import free_port, spawn, stop, wait_for_port, wait_for_signal

__all__ = [
    "PG_BINDIR_ENV",
    "REDIS_SERVER_ENV",
    "Postgres",
    "Redis",
    "Services",
    "apt_install",
    "ensure_installed",
    "install",
    "install_commands",
    "missing_packages",
    "running_services",
]

START_TIMEOUT = 60.0


# ---------------------------------------------------------------------- the servers


def _server_user() -> str | None:
    """Whom to run PostgreSQL as: ``postgres`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError(
            "running as root, and there is no `postgres` user to run PostgreSQL as "
            "(the Debian package `postgresql` creates it)"
        ) from None
    return "postgres"


@dataclass
class Postgres:
    """A private PostgreSQL server: one database, one password-protected role, loopback only."""

    root: Path
    port: int = 0
    user: str = "airflow"
    database: str = "airflow"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18), repr=False)
    popen: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def url(self, driver: str = "postgresql+psycopg2") -> str:
        """A SQLAlchemy URL (``driver`` picks the dialect and driver)."""
        return f"{driver}://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def psql_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": self.database,
        }

    def start(self) -> Postgres:
        bindir = postgres_bindir()
        if bindir is None:
            raise RuntimeError(
                "PostgreSQL is not installed: run `python -m scripts.services install`"
            )
        run_as = _server_user()
        self.root.mkdir(parents=True, exist_ok=True)
        if run_as is not None:
            entry = pwd.getpwnam(run_as)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        os.chmod(self.root, 0o700)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if run_as is not None:
            os.chown(pwfile, pwd.getpwnam(run_as).pw_uid, -1)
        try:
            _run_as(
                [
                    str(bindir / "initdb"),
                    "--pgdata",
                    str(self.data_dir),
                    "--username",
                    self.user,
                    "--pwfile",
                    str(pwfile),
                    "--auth",
                    "scram-sha-256",
                    "--encoding",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
                run_as,
                self.root,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        self.port = self.port or free_port()
        self.popen = spawn(
            [
                str(bindir / "postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                # No Unix socket in a shared folder: TCP on loopback only.
                "-c",
                "unix_socket_directories=",
                "-c",
                "max_connections=300",
                # Throw-away data: durability buys nothing and costs the 2-core machine.
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            log_path=self.log_path,
            cwd=self.root,
            user=run_as,
        )
        self._wait_ready(bindir)
        return self

    def _wait_ready(self, bindir: Path) -> None:
        assert self.popen is not None
        deadline = time.monotonic() + START_TIMEOUT
        env = {**self.psql_env(), "PGDATABASE": "postgres"}
        while True:
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"postgres exited with {self.popen.returncode}:\n{_tail(self.log_path)}"
                )
            done = subprocess.run(
                [str(bindir / "psql"), "-qAtc", f'CREATE DATABASE "{self.database}"'],
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                check=False,
            )
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"postgres not ready after {START_TIMEOUT:.0f}s: "
                    f"{done.stderr.decode(errors='replace')}\n{_tail(self.log_path)}"
                )
            time.sleep(0.2)

    def psql(self, sql: str, *, timeout: float = 60.0) -> str:
        """Run ``sql`` and return psql's unaligned, tuples-only output."""
        return self._tool("psql", ["-qAt", "-v", "ON_ERROR_STOP=1", "-c", sql], timeout)

    def dump(self, *, timeout: float = 300.0) -> str:
        """Every row of every table, as ``pg_dump --data-only`` prints it."""
        return self._tool("pg_dump", ["--data-only", "--no-owner"], timeout)

    def _tool(self, name: str, args: Sequence[str], timeout: float) -> str:
        bindir = postgres_bindir()
        assert bindir is not None
        done = subprocess.run(
            [str(bindir / name), *args],
            env=self.psql_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{name} failed: {done.stderr.strip()}")
        return done.stdout

    def stop(self) -> None:
        if self.popen is not None:
            # SIGINT is PostgreSQL's "fast" shutdown: disconnect clients, then exit.
            stop([self.popen], sig=signal.SIGINT, grace=20.0)


def _run_as(args: Sequence[str], user: str | None, cwd: Path) -> None:
    done = subprocess.run(
        list(args),
        user=user,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"`{args[0]}` exited with {done.returncode}:\n{done.stderr[-2000:]}")


@dataclass
class Redis:
    """A private Redis server: password, loopback only, nothing saved to disk."""

    root: Path
    port: int = 0
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18), repr=False)
    popen: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.root / "redis.log"

    def url(self, db: int = 0) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/{db}"

    def start(self) -> Redis:
        binary = redis_server()
        if binary is None:
            raise RuntimeError("Redis is not installed: run `python -m scripts.services install`")
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        config = self.root / "redis.conf"
        config.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {self.port}",
                    f"dir {self.root}",
                    f"requirepass {self.password}",
                    "protected-mode yes",
                    "daemonize no",
                    'save ""',
                    "appendonly no",
                    "loglevel warning",
                    "",
                ]
            )
        )
        config.chmod(0o600)
        self.popen = spawn([str(binary), str(config)], log_path=self.log_path, cwd=self.root)
        wait_for_port(self.port, timeout=START_TIMEOUT, check=self.popen)
        self._wait_pong()
        return self

    def _wait_pong(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with contextlib.suppress(OSError):
                with socket.create_connection(("127.0.0.1", self.port), 2) as sock:
                    sock.sendall(f"AUTH {self.password}\r\nPING\r\n".encode())
                    answer = b""
                    while answer.count(b"\r\n") < 2:
                        chunk = sock.recv(256)
                        if not chunk:
                            break
                        answer += chunk
                if answer == b"+OK\r\n+PONG\r\n":
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis did not answer PING:\n{_tail(self.log_path)}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.popen is not None:
            stop([self.popen], grace=10.0)


def _tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "<no log>"


@dataclass
class Services:
    postgres: Postgres
    redis: Redis
    root: Path


def _tempdir_any_user_can_enter(prefix: str) -> Path:
    # mkdtemp makes a 0700 folder: the postgres user could not reach its data inside it.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    return path


@contextlib.contextmanager
def running_services(
    root: Path | None = None, *, install_missing: bool = True, keep: bool = False
) -> Iterator[Services]:
    """PostgreSQL and Redis for the ``with`` block; stopped and deleted after it.

    ``root`` (default: a new temporary folder) holds their data and logs; ``keep`` leaves it.
    """
    if install_missing:
        ensure_installed()
    owned = root is None
    base = _tempdir_any_user_can_enter("airflow-batches-services-") if root is None else root
    postgres = Postgres(base / "postgres")
    redis = Redis(base / "redis")
    try:
        postgres.start()
        redis.start()
        yield Services(postgres, redis, base)
    finally:
        redis.stop()
        postgres.stop()
        if owned and not keep:
            shutil.rmtree(base, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.services", description=__doc__)
    parser.add_argument("command", choices=["install", "check", "up"])
    args = parser.parse_args(argv)
    if args.command == "check":
        missing = missing_packages()
        print("missing: " + ", ".join(missing) if missing else "PostgreSQL and Redis are installed")
        for command in install_commands(missing):
            print("  would run: " + " ".join(command))
        return 1 if missing else 0
    if args.command == "install":
        ensure_installed()
        print(f"PostgreSQL in {postgres_bindir()}, Redis at {redis_server()}")
        return 0
    with running_services() as services:
        print(f"PostgreSQL: {services.postgres.url()}")
        print(f"Redis:      {services.redis.url()}")
        print(f"data:       {services.root}  (Ctrl-C stops both and deletes it)")
        wait_for_signal()
    return 0


if __name__ == "__main__":
    sys.exit(main())
