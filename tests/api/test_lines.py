"""The line splitter: chunk boundaries anywhere, bytes in, lines out."""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator

import pytest

from airflow_batches.api import LineDecoder, aiter_lines, iter_lines
from airflow_batches.api._lines import count_sparse

# Two-, three- and four-byte UTF-8 characters, so that splits land inside each kind.
SAMPLE_LINES = [
    '{"custom_id":"a","text":"café"}'.encode(),
    '{"custom_id":"b","text":"日本語のテキスト"}'.encode(),
    '{"custom_id":"c","text":"emoji 🎉🚀 end"}'.encode(),
    b'{"custom_id":"d","text":"plain"}',
]
SAMPLE = b"\n".join(SAMPLE_LINES) + b"\n"


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def decode_all(chunks: list[bytes]) -> list[bytes]:
    decoder = LineDecoder()
    out: list[bytes] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    out.extend(decoder.flush())
    return out


def test_every_single_split_point_gives_the_same_lines() -> None:
    for cut in range(len(SAMPLE) + 1):
        lines = decode_all(split_at(SAMPLE, [cut]))
        assert lines == SAMPLE_LINES, cut
        # Each line is whole: it decodes, so no multi-byte character was cut in two.
        assert [line.decode("utf-8") for line in lines]


def test_every_pair_of_split_points_gives_the_same_lines() -> None:
    size = len(SAMPLE)
    for first in range(size + 1):
        for second in range(first, size + 1, 3):
            assert decode_all(split_at(SAMPLE, [first, second])) == SAMPLE_LINES


def test_splits_inside_each_multibyte_character_are_exercised() -> None:
    # Guard the two tests above: the sample really has cuts that land mid-character.
    mid_char = [
        i for i in range(1, len(SAMPLE)) if SAMPLE[i] & 0xC0 == 0x80 and SAMPLE[i - 1] >= 0x80
    ]
    widths = {len(ch.encode()) for line in SAMPLE_LINES for ch in line.decode()}
    assert mid_char
    assert {2, 3, 4} <= widths


def test_one_byte_at_a_time() -> None:
    assert decode_all([bytes([b]) for b in SAMPLE]) == SAMPLE_LINES


def test_random_chunkings() -> None:
    rng = random.Random(20261101)
    data = b"\n".join(SAMPLE_LINES * 50)
    for _ in range(200):
        cuts = [rng.randrange(len(data) + 1) for _ in range(rng.randrange(1, 40))]
        assert decode_all(split_at(data, cuts)) == SAMPLE_LINES * 50


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        pytest.param([b"a\r\nb\r\n"], [b"a", b"b"], id="crlf"),
        pytest.param([b"a\r", b"\nb\r", b"\n"], [b"a", b"b"], id="crlf-split-between-cr-and-lf"),
        pytest.param([b"a\nb"], [b"a", b"b"], id="no-trailing-newline"),
        pytest.param([b"a\nb\n"], [b"a", b"b"], id="trailing-newline"),
        pytest.param([b"a\r\nb\r"], [b"a", b"b"], id="trailing-cr-at-eof"),
        pytest.param([b"a\n\n\nb\n\n"], [b"a", b"b"], id="blank-lines-dropped"),
        pytest.param([b"\r\n\r\n"], [], id="only-blank-crlf"),
        pytest.param([b"", b"a", b"", b"\n", b""], [b"a"], id="empty-chunks"),
        pytest.param([], [], id="nothing"),
        pytest.param([b"a\rb\n"], [b"a\rb"], id="lone-cr-inside-a-line-is-kept"),
        pytest.param([b"x" * 10, b"y" * 10, b"\nz"], [b"x" * 10 + b"y" * 10, b"z"], id="pending"),
    ],
)
def test_terminators(chunks: list[bytes], expected: list[bytes]) -> None:
    assert decode_all(chunks) == expected
    assert list(iter_lines(chunks)) == expected


def test_multi_megabyte_line_in_small_chunks() -> None:
    big = b'{"custom_id":"big","text":"' + "é".encode() * (3 * 1024 * 1024) + b'"}'
    data = big + b"\n" + SAMPLE_LINES[0] + b"\n"
    # 64 KiB minus one, so that chunk edges drift across the two-byte characters.
    step = 65535
    chunks = [data[i : i + step] for i in range(0, len(data), step)]
    lines = list(iter_lines(chunks))
    assert len(lines) == 2
    assert lines[0] == big
    assert len(lines[0]) > 6 * 1024 * 1024
    assert lines[1] == SAMPLE_LINES[0]


def test_feed_returns_only_complete_lines() -> None:
    decoder = LineDecoder()
    assert decoder.feed(b'{"a":') == []
    assert decoder.feed(b"1}\n{") == [b'{"a":1}']
    assert decoder.feed(b'"b":2}') == []
    assert decoder.flush() == [b'{"b":2}']
    assert decoder.flush() == []


async def _agen(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


@pytest.mark.anyio
async def test_async_lines_match_sync_lines() -> None:
    rng = random.Random(7)
    for _ in range(50):
        cuts = [rng.randrange(len(SAMPLE) + 1) for _ in range(5)]
        chunks = split_at(SAMPLE + b"tail\r", cuts)
        got = [line async for line in aiter_lines(_agen(chunks))]
        assert got == list(iter_lines(chunks)) == [*SAMPLE_LINES, b"tail"]


def test_count_sparse_agrees_with_bytes_count() -> None:
    rng = random.Random(31)
    samples = [b"", b":", b"::", b"a:b", b"\n" * 1000, bytes(range(256)) * 4]
    samples += [
        bytes(rng.choice(b"ab:\n\x00\xff") for _ in range(rng.randrange(300))) for _ in range(200)
    ]
    for data in samples:
        for byte in (b":", b"\n", b"\x00"):
            assert count_sparse(data, byte) == data.count(byte)
