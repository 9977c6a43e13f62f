"""scripts/services.py: what it installs when a server is missing, and private servers that
start on loopback and leave nothing behind."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from scripts import services
from scripts.processes import alive, process_family


def test_missing_servers_are_installed_from_debian_packages(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(services.PG_BINDIR_ENV, str(tmp_path / "no-postgres"))
    monkeypatch.setenv(services.REDIS_SERVER_ENV, str(tmp_path / "no-redis-server"))
    missing = services.missing_packages()
    assert missing == ["postgresql", "redis-server"]
    assert services.install_commands(missing) == [
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql", "redis-server"],
    ]
    assert services.install_commands([]) == []


def test_a_server_found_is_not_installed_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bindir = tmp_path / "15" / "bin"
    bindir.mkdir(parents=True)
    for name in ("initdb", "postgres"):
        (bindir / name).write_text("")
    (tmp_path / "redis-server").write_text("")
    monkeypatch.setenv(services.PG_BINDIR_ENV, str(bindir))
    monkeypatch.setenv(services.REDIS_SERVER_ENV, str(tmp_path / "redis-server"))
    assert services.missing_packages() == []
    assert services.install() == []  # nothing to do: apt is not called


@pytest.mark.slow
def test_postgres_and_redis_run_on_loopback_and_stop_by_pid() -> None:
    with services.running_services() as running:
        pg, redis = running.postgres, running.redis
        assert pg.psql("SELECT current_user, current_database()").strip() == "airflow|airflow"
        assert pg.psql("SHOW listen_addresses").strip() == "127.0.0.1"
        with socket.create_connection(("127.0.0.1", redis.port), 5) as sock:
            sock.sendall(b"PING\r\n")
            assert sock.recv(128).startswith(b"-NOAUTH")  # a password is required
        assert pg.popen is not None and redis.popen is not None
        family = process_family([pg.popen.pid, redis.popen.pid])
        assert len(family) > 2  # the postmaster's own processes are tracked too
        root = running.root
    assert not alive(family)
    assert not root.exists()
