"""ResultJoin: metadata and the matrix joined onto each line, whatever order the lines come in,
read alongside the sidecar or, past the lookahead's bound, from its disk index."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from airflow_batches.api._pricing import load_price_table
from airflow_batches.jobs.prepare import ModelMatrix, Sidecar
from airflow_batches.jobs.results._join import ResultJoin
from airflow_batches.jobs.results._scan import scan_result_line

PRICES = load_price_table(None)
LONG = "L" * 64


def line(custom_id: str) -> bytes:
    return json.dumps(
        {"custom_id": custom_id, "result": {"type": "expired"}}, separators=(",", ":")
    ).encode()


def sidecar_of(path: Path, matrix: ModelMatrix, ids: list[str]) -> Path:
    sidecar = Sidecar()
    sidecar.attach(lambda: path.open("wb"))
    for model in matrix.models:
        for n, custom_id in enumerate(ids):
            derived = matrix.custom_id(model, custom_id)
            if custom_id == LONG and model is matrix.models[0]:
                sidecar.original(derived.partition("_")[2], custom_id)
            if n % 5:  # every fifth request carries no metadata
                sidecar.metadata(derived, json.dumps({"n": n}).encode())
    sidecar.detach()
    return path


@pytest.mark.parametrize("bound", [10_000, 7], ids=["read alongside", "past the bound"])
def test_every_line_gets_its_own_metadata_and_model(tmp_path: Path, bound: int) -> None:
    matrix = ModelMatrix.of(["claude-haiku-4-5", "claude-sonnet-4-5"])
    ids = [f"q{n}" for n in range(60)] + [LONG]
    path = sidecar_of(tmp_path / "sidecar.jsonl", matrix, ids)
    join = ResultJoin.open(PRICES, matrix=matrix, sidecar=path)
    assert join._metadata is not None
    join._metadata.max_entries = bound
    wanted = [
        (model, n, matrix.custom_id(model, c)) for model in matrix.models for n, c in enumerate(ids)
    ]
    batches = [wanted[i : i + 20] for i in range(0, len(wanted), 20)]
    rng = random.Random(5)
    for batch in batches:
        rng.shuffle(batch)
    for model, n, derived in (item for batch in batches for item in batch):
        published, label = join.billed(scan_result_line(line(derived)), derived, line(derived))
        got = json.loads(published)
        assert label == model.label
        assert got["matrix"] == {"model": model.label, "custom_id": ids[n]}
        assert got.get("metadata") == ({"n": n} if n % 5 else None)
        assert published.startswith(line(derived)[:-1])  # the API's bytes, then the members
    assert (join._metadata.index is not None) == (bound == 7)
    assert all(len(d) <= 64 for _, _, d in wanted)  # the long id was shortened, and restored
    assert join.metadata_lines == sum(1 for _, n, _ in wanted if n % 5)
    join.finish(ok=True)
