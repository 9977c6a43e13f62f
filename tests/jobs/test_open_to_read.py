"""``open_to_read``: the hot readers' way into a file (a local file by its name, with a bigger
buffer than its block size; anything else through its filesystem) reads the same bytes."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.sdk import ObjectStoragePath
from upath import UPath

from airflow_batches.jobs._store import open_to_read


def test_a_file_opened_to_read_gives_the_same_bytes_on_every_kind_of_path(
    tmp_path: Path,
) -> None:
    body = bytes(range(256)) * 1000
    (tmp_path / "segment.jsonl").write_bytes(body)
    paths = [
        tmp_path / "segment.jsonl",
        ObjectStoragePath(f"file://{tmp_path}/segment.jsonl"),
    ]
    memory = UPath("memory://hits-test/segment.jsonl")  # through fsspec
    with memory.open("wb") as out:
        out.write(body)
    for path in [*paths, memory]:
        with open_to_read(path) as stream:
            assert stream.read(10) == body[:10]
            stream.seek(70_000)
            assert stream.read(300) == body[70_000:70_300]
            stream.seek(5)
            assert stream.read() == body[5:]
    with pytest.raises(FileNotFoundError):
        open_to_read(tmp_path / "gone.jsonl")
    memory.unlink()


def test_lines_read_are_the_lines_written(tmp_path: Path) -> None:
    lines = [b"x" * n + b"\n" for n in (0, 1, 4095, 4096, 70_000, 3)] + [b"no newline"]
    (tmp_path / "lines.jsonl").write_bytes(b"".join(lines))
    with open_to_read(ObjectStoragePath(f"file://{tmp_path}/lines.jsonl"), buffer=4096) as stream:
        assert list(stream) == lines
