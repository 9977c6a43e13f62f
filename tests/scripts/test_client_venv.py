"""scripts/client_venv.py: the clients' virtualenv is reused while its stamp matches, rebuilt
from nothing when the packages or the constraints change, and a failed step is named.

A stand-in interpreter (a shell script recording its arguments) plays ``python``: the real
build is exercised by tests/emulator/test_real_clients.py.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from scripts.client_venv import ClientVenvError, clients_python, stamp_of

FAKE_PYTHON = """#!/bin/sh
echo "$@" >> {log}
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  mkdir -p "$3/bin" && cp "$0" "$3/bin/python"
fi
exit {status}
"""


def _fake_python(tmp_path: Path, status: int = 0) -> tuple[Path, Path]:
    log = tmp_path / "calls.log"
    script = tmp_path / "fake-python"
    script.write_text(FAKE_PYTHON.format(log=log, status=status))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, log


def test_a_matching_stamp_is_reused_without_running_anything(tmp_path: Path) -> None:
    constraints = tmp_path / "clients.txt"
    constraints.write_text("pkg==1\n")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    (venv / ".installed").write_text(stamp_of(["pkg==1"], constraints))
    python = clients_python(venv, ["pkg==1"], constraints, base_python="/no/such/python")
    assert python == venv / "bin" / "python"


def test_a_stale_venv_is_rebuilt_from_nothing(tmp_path: Path) -> None:
    fake, log = _fake_python(tmp_path)
    constraints = tmp_path / "clients.txt"
    constraints.write_text("pkg==1\n")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "leftover").write_text("from an older build")
    (venv / ".installed").write_text(stamp_of(["pkg==1"], constraints))
    constraints.write_text("pkg==2\n")  # the constraints changed since that build

    python = clients_python(venv, ["pkg==2"], constraints, base_python=str(fake))

    assert python == venv / "bin" / "python"
    assert not (venv / "leftover").exists()
    assert (venv / ".installed").read_text() == stamp_of(["pkg==2"], constraints)
    calls = log.read_text().splitlines()
    assert calls[0] == f"-m venv {venv}"
    assert calls[1] == f"-m pip install --quiet -c {constraints} pkg==2"
    # Built once; the second call finds the stamp.
    clients_python(venv, ["pkg==2"], constraints, base_python=str(fake))
    assert len(log.read_text().splitlines()) == 2


def test_a_failed_step_is_named(tmp_path: Path) -> None:
    fake, _ = _fake_python(tmp_path, status=3)
    constraints = tmp_path / "clients.txt"
    constraints.write_text("pkg==1\n")
    with pytest.raises(ClientVenvError, match=r"could not create the virtualenv .*exited 3"):
        clients_python(tmp_path / "venv", ["pkg==1"], constraints, base_python=str(fake))
    assert not (tmp_path / "venv" / ".installed").exists()
