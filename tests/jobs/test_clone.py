"""``copy_stream``: the kernel's copy between local files, blocks elsewhere; what was read of
the source already is not copied, and the target can be written on after. ``clone``: a hard
link on one local disk, else a copy; whole or nothing. (On S3: ``cache/test_cache_on_s3``.)"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from airflow_batches.jobs._store import clone, copy_stream

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


def test_a_clone_on_one_disk_is_a_hard_link_and_leaves_nothing_else(tmp_path: Path) -> None:
    source = tmp_path / "a" / "requests.jsonl"
    source.parent.mkdir()
    source.write_bytes(BODY)
    target = tmp_path / "b" / "requests.jsonl"
    clone(source, target)
    assert target.read_bytes() == BODY
    assert os.stat(target).st_ino == os.stat(source).st_ino  # not one byte written
    assert sorted(p.name for p in target.parent.iterdir()) == ["requests.jsonl"]
    clone(source, target)  # again, over the first: replaced whole
    assert target.read_bytes() == BODY


def test_a_clone_where_links_fail_is_a_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cross_device(*args: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    source, target = tmp_path / "a", tmp_path / "b"
    source.write_bytes(BODY)
    clone(source, target)
    assert target.read_bytes() == BODY and os.stat(target).st_ino != os.stat(source).st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_a_clone_of_a_missing_file_raises_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        clone(tmp_path / "gone", tmp_path / "b")
    assert list(tmp_path.iterdir()) == []
