"""The JSONL line reader: raw line numbers, blank lines, BOM, gzip, and bounded memory."""

from __future__ import annotations

import gzip
import io
import random
import tracemalloc

import pytest

from airflow_batches.jobs.prepare import records_from_items, records_from_jsonl, records_from_text
from airflow_batches.jobs.prepare._request_files import Unreadable


def read(data: bytes, **kw: int) -> list[tuple[str, bytes | Unreadable]]:
    return list(records_from_jsonl(io.BytesIO(data), **kw))


def test_lines_keep_raw_numbers_across_blank_lines_crlf_and_a_missing_last_newline() -> None:
    data = b'\n{"a":1}\r\n  \t\r\n\n{"b":2}  \n{"c":3}'
    assert read(data) == [("line 2", b'{"a":1}'), ("line 5", b'{"b":2}'), ("line 6", b'{"c":3}')]


def test_a_leading_bom_is_dropped_and_only_that_one() -> None:
    bom = b"\xef\xbb\xbf"
    assert read(bom + b"{}\n" + bom + b"{}\n") == [("line 1", b"{}"), ("line 2", bom + b"{}")]


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 64, 1 << 20])
def test_chunk_boundaries_do_not_change_the_lines(chunk_size: int) -> None:
    rng = random.Random(chunk_size)
    lines = [
        bytes(rng.choice(b'ab{}": \r') for _ in range(rng.randrange(0, 40))) for _ in range(200)
    ]
    data = b"\n".join(lines) + b"\n"
    expected = [
        (f"line {i}", line.strip(b" \t\r\n"))
        for i, line in enumerate(lines, start=1)
        if line.strip(b" \t\r\n")
    ]
    assert read(data, chunk_size=chunk_size) == expected


def test_gzip_is_recognised_by_its_magic_bytes_whatever_the_name() -> None:
    data = gzip.compress(b'\xef\xbb\xbf{"a":1}\n{"b":2}\n')
    assert read(data) == [("line 1", b'{"a":1}'), ("line 2", b'{"b":2}')]


def test_broken_gzip_is_reported_not_raised() -> None:
    data = gzip.compress(b'{"a":1}\n' * 50_000)[:-30]
    (_, record), *_ = [r for r in read(data) if isinstance(r[1], Unreadable)]
    assert isinstance(record, Unreadable) and "compressed data is broken" in record.message


def test_lines_longer_than_the_hold_are_spilled_and_come_back_whole() -> None:
    long_line = b'{"x":"' + b"y" * 5000 + b'"}'
    records = read(b"{}\n" + long_line + b"\n{}\n", hold_bytes=100, chunk_size=64)
    assert records == [("line 1", b"{}"), ("line 2", long_line), ("line 3", b"{}")]


@pytest.mark.parametrize("chunk_size", [16, 1 << 20])
def test_a_line_over_the_limit_is_reported_with_its_custom_id_and_never_kept(
    chunk_size: int,
) -> None:
    line = b'{"custom_id":"big-1","params":"' + b"z" * 1000 + b'"}'
    records = read(
        b"{}\n" + line + b"\n{}\n", max_line_bytes=500, hold_bytes=100, chunk_size=chunk_size
    )
    assert [loc for loc, _ in records] == ["line 1", "line 2", "line 3"]
    record = records[1][1]
    assert isinstance(record, Unreadable)
    assert record.custom_id == "big-1"
    assert f"is {len(line):,} bytes" in record.message


def test_a_280_mb_line_is_refused_in_bounded_memory() -> None:
    """The line is produced on the fly: nothing but the reader can hold it."""
    size = 280_000_000
    head = b'{"custom_id":"huge","params":{"messages":[{"role":"user","content":"'

    class Endless(io.RawIOBase):
        left = size - len(head)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            n = min(len(buffer), self.left)
            buffer[:n] = b"x" * n
            self.left -= n
            return n

    stream = io.BufferedReader(_Chain(head, Endless()), buffer_size=1 << 20)
    tracemalloc.start()
    try:
        records = list(records_from_jsonl(stream))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    ((location, record),) = records
    assert location == "line 1" and isinstance(record, Unreadable)
    assert record.custom_id == "huge" and "280,000,000 bytes" in record.message
    assert peak < 60_000_000, f"peak {peak / 1e6:.0f} MB"


class _Chain(io.RawIOBase):
    def __init__(self, head: bytes, rest: io.RawIOBase) -> None:
        self.head = head
        self.rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        return self.rest.readinto(buffer)


@pytest.mark.parametrize(
    ("data", "what"),
    [
        ("{}\n".encode("utf-16"), "UTF-16"),
        ("{}\n".encode("utf-16-le"), "UTF-16"),
        ("{}\n".encode("utf-32"), "UTF-32"),
        (b"PK\x03\x04rest", "zip"),
    ],
)
def test_files_that_are_not_utf8_jsonl_are_refused_at_line_1(data: bytes, what: str) -> None:
    ((location, record),) = read(data)
    assert location == "line 1" and isinstance(record, Unreadable) and what in record.message


def test_items_are_labelled_by_their_index() -> None:
    assert list(records_from_items(["a", "b"])) == [("request 0", "a"), ("request 1", "b")]


def test_a_templated_list_rendered_as_text_is_read_as_strictly_as_a_file() -> None:
    text = (
        '[{"custom_id": "a", "params": {"max_tokens": 1, "max_tokens": 2}},'
        ' {"custom_id": "b", "params": {"messages": [{"role": "user", "content": "\\ud800"}]}}]'
    )
    records = list(records_from_text(text))
    assert [(loc, r.custom_id, r.field) for loc, r in records] == [  # type: ignore[union-attr]
        ("request 0", "a", "params.max_tokens"),
        ("request 1", "b", "params.messages[0].content"),
    ]
    good = '[{"custom_id": "a", "params": {}}, {"custom_id": "b", "params": {}}]'
    assert [loc for loc, _ in records_from_text(good)] == ["request 0", "request 1"]
    ((location, record),) = records_from_text('{"custom_id": "a"}')
    assert location == "requests" and isinstance(record, Unreadable)
    ((location, record),) = records_from_text("[1, 2")
    assert location == "requests" and "not valid JSON" in record.message  # type: ignore[union-attr]


def test_what_the_file_is_is_told_even_from_a_stream_of_short_reads() -> None:
    class Trickle(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.data = data

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            piece, self.data = self.data[:1], self.data[1:]
            return piece

    records = list(records_from_jsonl(Trickle(gzip.compress(b'{"a":1}\n{"b":2}\n'))))
    assert records == [("line 1", b'{"a":1}'), ("line 2", b'{"b":2}')]
