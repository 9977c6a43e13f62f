"""The corpus of request files (tests/jobs/prepare/request_files, written by its build.py).

Every malformed file is refused before anything is sent, with a ``RequestValidationError``
whose message names what the corpus expects (line, custom_id, field, fault) in under 2,000
characters; every odd-but-valid file passes. Nothing else may escape: no RecursionError,
UnicodeDecodeError, KeyError or bare ValueError.
"""

from __future__ import annotations

import importlib.util
import io
import tomllib
from pathlib import Path
from typing import Any

import pytest

from airflow_batches.jobs.prepare import (
    RequestValidationError,
    RequestValidator,
    prepare,
    records_from_jsonl,
)

FILES = Path(__file__).parent / "request_files"
EXPECTED: dict[str, dict[str, Any]] = tomllib.loads((FILES / "expected.toml").read_text())


def run(path: Path) -> Any:
    validator = RequestValidator(anthropic_version="2023-06-01")
    sink = io.BytesIO()
    with path.open("rb") as stream:
        prepared = prepare(records_from_jsonl(stream), validator, sink)
    return prepared, sink.getvalue()


@pytest.mark.parametrize("name", sorted(EXPECTED["malformed"]))
def test_malformed_file_is_refused_naming_line_id_and_field(name: str) -> None:
    with pytest.raises(RequestValidationError) as info:
        run(FILES / "malformed" / name)
    message = str(info.value)
    assert len(message) < 2000, message[:300]
    for expected in EXPECTED["malformed"][name]["names"]:
        assert expected in message, f"{name}: {expected!r} not in:\n{message}"


@pytest.mark.parametrize("name", sorted(EXPECTED["valid"]))
def test_odd_but_valid_file_passes(name: str) -> None:
    prepared, staged = run(FILES / "valid" / name)
    assert prepared.request_count == EXPECTED["valid"][name]["requests"]
    assert staged.count(b"\n") == prepared.request_count
    assert b"\r" not in staged and not staged.startswith(b"\xef\xbb\xbf")


def test_every_file_has_a_verdict_and_build_py_writes_exactly_these_files(
    tmp_path: Path,
) -> None:
    on_disk = {
        str(p.relative_to(FILES))
        for folder in ("malformed", "valid")
        for p in (FILES / folder).iterdir()
    }
    listed = {f"{kind}/{name}" for kind in ("malformed", "valid") for name in EXPECTED[kind]}
    assert on_disk == listed
    spec = importlib.util.spec_from_file_location("build_corpus", FILES / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = module.build(tmp_path)
    for rel, data in written.items():
        committed = (FILES / rel).read_bytes()
        if data.startswith(b"\x1f\x8b"):  # gzip: another zlib may compress differently
            assert committed.startswith(b"\x1f\x8b"), rel
            continue
        assert committed == data, f"{rel} differs from build.py's output"
