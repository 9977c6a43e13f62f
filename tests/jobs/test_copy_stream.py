"""``copy_stream``: the kernel's copy between local files, blocks elsewhere; what was read of
the source already is not copied, and the target can be written on after."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from airflow_batches.jobs._store import copy_stream

BODY = bytes(range(256)) * 40_000  # 10 MB, every byte value


def test_local_files_are_copied_from_where_the_source_was_read_to(tmp_path: Path) -> None:
    source, target = tmp_path / "a", tmp_path / "b"
    source.write_bytes(BODY)
    with source.open("rb") as stream, target.open("wb") as out:
        out.write(b"head:")
        assert stream.read(7) == BODY[:7]
        copy_stream(stream, out)
        assert stream.read() == b""  # the source is left at its end
        out.write(b":tail")
        assert out.tell() == 5 + len(BODY) - 7 + 5
    assert target.read_bytes() == b"head:" + BODY[7:] + b":tail"


def test_streams_without_a_file_are_copied_in_blocks(tmp_path: Path) -> None:
    source = io.BytesIO(BODY)
    source.read(3)
    out = io.BytesIO()
    copy_stream(source, out)
    assert out.getvalue() == BODY[3:]


def test_a_kernel_that_refuses_falls_back_to_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object) -> int:
        raise OSError(22, "sendfile not supported here")

    monkeypatch.setattr(os, "sendfile", refuse)
    source, target = tmp_path / "a", tmp_path / "b"
    source.write_bytes(BODY)
    with source.open("rb") as stream, target.open("wb") as out:
        copy_stream(stream, out)
    assert target.read_bytes() == BODY
