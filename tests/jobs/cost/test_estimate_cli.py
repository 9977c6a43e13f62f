"""``airflow-batches estimate FILE``: the pre-flight and the estimate, without Airflow."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_batches.cli import main


def write(path: Path, items: list[dict[str, Any]]) -> Path:
    data = "".join(json.dumps(i) + "\n" for i in items).encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def item(custom_id: str, model: str = "claude-sonnet-5-5", **params: Any) -> dict[str, Any]:
    body = {"model": model, "max_tokens": 200, "messages": [{"role": "user", "content": "x" * 395}]}
    return {"custom_id": custom_id, "params": {**body, **params}}


def test_prints_the_estimate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "in.jsonl", [item("a"), item("b", "claude-haiku-5-5")])
    assert main(["estimate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Cost estimate for 2 request(s) at batch prices: expected $" in out
    assert "claude-haiku-5-5: 1 request(s)" in out
    assert "claude-sonnet-5-5: 1 request(s)" in out


def test_json_and_model_override_and_gzip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "in.jsonl.gz", [item("a"), item("b", "claude-fable-5-1")])
    assert main(["estimate", str(path), "--model", "claude-haiku-4-5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report["models"]) == ["claude-haiku-4-5"]
    assert report["requests"] == 2
    # 2 * (100 input + 100 output) at Haiku 4.5's batch prices: 0.5 * (200*1 + 200*5) / 1e6
    assert report["expected_usd"] == pytest.approx(0.0006)


def test_refused_requests_are_listed_and_the_rest_estimated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path / "in.jsonl",
        [item("ok"), item("forced", "claude-opus-5-5", tool_choice={"type": "any"})],
    )
    assert main(["estimate", str(path)]) == 1
    captured = capsys.readouterr()
    assert "Cost estimate for 1 request(s)" in captured.out
    assert "line 2 (custom_id 'forced'): params.tool_choice.type" in captured.err
    assert main(["estimate", str(path), "--disable-rule", "forced_tool_use"]) == 0


def test_spend_limit_and_calibration_from_a_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "in.jsonl", [item("a"), item("b")])
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        json.dumps({"usage_by_model": {"claude-sonnet-5-5": {"requests": 2, "output_tokens": 20}}})
    )
    assert main(["estimate", str(path), "--output-from", str(manifest), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["models"]["claude-sonnet-5-5"]["tokens"]["output"] == 20
    assert main(["estimate", str(path), "--max-cost-usd", "0.000001"]) == 3
    assert "over max_cost_usd" in capsys.readouterr().err


def test_prices_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text(
        '[models."claude-fable-5-2"]\ninput = 8\noutput = 40\ncache_write_5m = 10\n'
        "cache_write_1h = 16\ncache_read = 0.2\n"
    )
    monkeypatch.setenv("AIRFLOW__AIRFLOW_BATCHES__PRICES_PATH", str(prices))
    path = write(tmp_path / "in.jsonl", [item("a", "claude-fable-5-2")])
    assert main(["estimate", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["unpriced_models"] == []
    # 100 input * 8 + 100 output * 40 (half of max_tokens), batch: half
    tokens = report["models"]["claude-fable-5-2"]["tokens"]
    assert report["expected_usd"] == pytest.approx(
        0.5 * (tokens["input"] * 8 + 100 * 40) / 1e6, rel=1e-4
    )


def test_runs_without_importing_airflow(tmp_path: Path) -> None:
    path = write(tmp_path / "in.jsonl", [item("a")])
    code = (
        "import sys\nfrom airflow_batches.cli import main\n"
        f"rc = main(['estimate', {str(path)!r}])\n"
        "assert 'airflow' not in sys.modules, 'Airflow was imported'\nraise SystemExit(rc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "expected $" in done.stdout


@pytest.mark.parametrize("name", ["missing.jsonl", "folder"])
def test_an_unreadable_path_is_named_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    (tmp_path / "folder").mkdir()
    path = tmp_path / name
    assert main(["estimate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"airflow-batches estimate: cannot read {path}: ")
    assert ("folder" in err) if name == "folder" else ("No such file" in err)
    assert "Traceback" not in err


def test_accepts_every_file_the_operator_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # metadata (never sent) and requests that rely on the operator's defaults=
    bare = {"messages": [{"role": "user", "content": "x" * 395}]}
    path = write(
        tmp_path / "in.jsonl",
        [
            {"custom_id": "a", "params": bare, "metadata": {"row": 1, "expected": "SAFE"}},
            {"custom_id": "b", "params": {**bare, "max_tokens": 50}, "metadata": None},
        ],
    )
    defaults = '{"model": "claude-haiku-4-5", "max_tokens": 200}'
    assert main(["estimate", str(path), "--defaults", defaults, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["requests"] == 2
    # the request's own max_tokens wins over the default: 100 + 25 expected output tokens
    assert report["models"]["claude-haiku-4-5"]["tokens"]["output"] == 125


def test_speaks_like_an_estimate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bare = {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "x"}]}
    path = write(tmp_path / "in.jsonl", [{"custom_id": "a", "params": bare}])
    assert main(["estimate", str(path)]) == 1
    err = capsys.readouterr().err
    said = [err]
    assert err.startswith("nothing to estimate: 1 invalid request(s), none valid:")
    assert "line 1 (custom_id 'a'): params.max_tokens: is required" in err
    assert "--defaults '{\"max_tokens\": 512}'" in err
    path = write(tmp_path / "ok.jsonl", [item("a")])
    assert main(["estimate", str(path), "--max-cost-usd", "0.000001"]) == 3
    err = capsys.readouterr().err
    said.append(err)
    assert "the job's expected cost is over max_cost_usd" in err
    assert "SubmitBatchOperator(max_cost_usd=...) would refuse this job" in err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    assert main(["estimate", str(empty)]) == 1
    err = capsys.readouterr().err
    said.append(err)
    assert err.startswith("nothing to estimate: the file holds no requests")
    assert not [text for text in said if "submit" in text.replace("SubmitBatchOperator", "")]
