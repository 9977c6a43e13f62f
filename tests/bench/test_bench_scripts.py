"""The benchmark scripts run, on inputs small enough to take seconds (nothing is timed)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def run(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_compare_runs_every_contender_against_the_sink(tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    out = run(
        "compare.py",
        "--requests",
        "40",
        "--prompt-bytes",
        "20",
        "--rounds",
        "2",
        "--sdk-python",
        "self",
        "--work",
        str(tmp_path),
        "--json",
        str(figures),
    )
    assert "P1 submit: 40 requests" in out
    data = json.loads(figures.read_text())
    assert set(data["cases"]) == {"P1", "P2"}  # by default (and so in `make bench`), both
    contenders = data["cases"]["P1"]["contenders"]
    has_curl = shutil.which("curl") is not None
    expected = {"ours", "sdk", "floor"} | ({"curl"} if has_curl else set())
    assert set(contenders) == expected
    for figures_of in contenders.values():
        assert figures_of["seconds"] > 0
    assert contenders["ours"]["rss_mib"] > 10  # read from the child's own VmHWM
    # The floor sent the very body ours and curl send (the runner checks its size).
    assert {"read_decode_stage_s", "upload_s"} <= set(contenders["floor"])
    assert "validation (validate + stage) of ours" in out
    # Ours against the floor, of the time and of CPU (each child counts its own).
    assert "ours / floor: " in out and "x of CPU time" in out
    assert contenders["ours"]["cpu_s"] > 0 and contenders["floor"]["cpu_s"] > 0
    if has_curl:
        assert "target 3x curl = " in out
        assert "target 1.5x curl = " in out
    assert list(tmp_path.iterdir()) == [figures]  # the work folder is cleaned up


def test_compare_fetch_case_runs_every_contender(tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    out = run(
        "compare.py",
        *("--cases", "P2", "--requests", "30", "--result-bytes", "50", "--rounds", "1"),
        *("--sdk-python", "self"),
        *("--work", str(tmp_path), "--json", str(figures)),
    )
    assert "P2 fetch to a file" in out
    contenders = json.loads(figures.read_text())["cases"]["P2"]["contenders"]
    assert {"ours", "sdk", "floor"} <= set(contenders)
    assert all(c["seconds"] > 0 for c in contenders.values())
    assert contenders["ours"]["cpu_s"] > 0 and contenders["floor"]["cpu_s"] > 0
    assert "ours / floor: " in out


def test_validation_layers_and_the_absurd_line() -> None:
    out = run(
        "validation.py",
        *("--requests", "300", "--repeat", "1", "--absurd-mb", "3", "--line-limit", "1000000"),
    )
    assert "one line of 3 MB: is 3,000,000 bytes; a request must fit one batch body" in out
    assert "lines that took the careful path: 0 of 300" in out
    assert "lines that took the careful path: 3 of 300" in out  # the hostile mix: 1 %
    assert "prepare (read+check+stage+hash)" in out


def test_cache_growth_compares_one_night_with_ten(tmp_path: Path) -> None:
    out = run(
        "cache_growth.py",
        *("--requests", "40", "--nights", "3", "--rounds", "1", "--work", str(tmp_path)),
    )
    assert "40 questions x 3 models" in out
    assert "one night" in out and "3 nights, all new" in out
    assert "120/0" in out and "0/120" in out  # every request a hit, then every one a miss
    assert "3 nights / one night: " in out
    assert list(tmp_path.iterdir()) == []


def test_eval_scale_runs_both_nights_and_prints_each_phase() -> None:
    out = run("eval_scale.py", "--requests", "30")
    assert "night 1 submit" in out and "night 2 evaluate" in out
    assert "/s" in out and "MiB" in out and "load" in out
    figures = json.loads(out.strip().splitlines()[-1])[0]
    assert figures["night1_create_calls"] == 3
    assert figures["night2_create_calls"] == 0
    assert figures["night2_cache_hits"] == 90
