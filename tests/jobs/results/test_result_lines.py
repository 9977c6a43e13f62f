"""Result lines as hostile servers send them, read through the one download path.

Every body is served byte for byte by a real HTTP server (tests/hostile.py) in odd chunkings,
so a line or a UTF-8 character is split across chunks, and cut where a test says.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_batches.api import Client, MessageBatch, RetryPolicy
from airflow_batches.jobs._descriptor import BatchInfo
from airflow_batches.jobs._ids import ids_digest
from airflow_batches.jobs.results import (
    Attempt,
    DownloadPolicy,
    ForeignResultsError,
    IncompleteResultsError,
    Reader,
    stream_final_lines,
)
from airflow_batches.jobs.results._download import ResultsDownloadError
from airflow_batches.jobs.results._scan import MalformedResultLineError
from tests.hostile import API_KEY, HostileServer

LOG = logging.getLogger("test.results")
CHUNKINGS = [(1,), (7,), (3, 1, 64), (1 << 20,)]


def ok(custom_id: str, text: str = "4", **usage: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "result": {
            "type": "succeeded",
            "message": {
                "id": f"msg_{custom_id}",
                "type": "message",
                "role": "assistant",
                "model": "claude-haiku-4-5",
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "usage": usage or {"input_tokens": 10, "output_tokens": 2},
            },
        },
    }


def errored(custom_id: str, error_type: str) -> dict[str, Any]:
    error = {"type": "error", "error": {"type": error_type, "message": "x"}, "request_id": None}
    return {"custom_id": custom_id, "result": {"type": "errored", "error": error}}


def line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


@pytest.fixture
def client(hostile: HostileServer) -> Iterator[Client]:
    with Client(api_key=API_KEY, base_url=hostile.base_url, max_retries=0) as c:
        yield c


def read(
    client: Client,
    hostile: HostileServer,
    body: bytes,
    n: int,
    **kw: Any,
) -> tuple[list[tuple[Any, bytes]], Reader, BatchInfo]:
    digest = kw.pop("digest", None)
    hostile.serve("msgbatch_h", body, n, **kw)
    info = BatchInfo(id="msgbatch_h", request_count=n, ids_digest=digest or "")
    policy = DownloadPolicy(retry=RetryPolicy(initial_delay=0, max_delay=0), sleep=lambda s: None)
    reader = Reader(client, LOG, policy, job_id="job1")
    batch = client.retrieve("msgbatch_h")
    return list(reader.lines(info, batch)), reader, info


@pytest.mark.parametrize("chunks", CHUNKINGS)
def test_blank_lines_and_crlf_are_skipped_and_numbers_count_raw_lines(
    client: Client,
    hostile: HostileServer,
    chunks: tuple[int, ...],
    caplog: pytest.LogCaptureFixture,
) -> None:
    body = line(ok("a", "é½")) + b"\r\n\n  \n" + line(ok("b")) + b"\n\n" + line(ok("c"))
    with caplog.at_level(logging.WARNING, logger="test.results"):
        lines, reader, _ = read(client, hostile, body, 3, chunks=chunks)
    assert [r.custom_id for r, _ in lines] == ["a", "b", "c"]
    assert json.loads(lines[0][1])["result"]["message"]["content"][0]["text"] == "é½"
    assert reader.stats.blank == 3
    blank = [r.getMessage() for r in caplog.records if "blank" in r.getMessage()]
    assert [m.split("line ")[1].split(" ")[0] for m in blank] == ["2", "3", "5"]


def test_a_replayed_line_is_kept_once_but_two_different_lines_are_an_error(
    client: Client,
    hostile: HostileServer,
) -> None:
    body = b"\n".join([line(ok("a")), line(ok("b")), line(ok("a"))]) + b"\n"
    lines, reader, _ = read(client, hostile, body, 2)
    assert [r.custom_id for r, _ in lines] == ["a", "b"]
    assert reader.stats.replayed == 1
    clash = b"\n".join([line(ok("a")), line(ok("b")), line(ok("a", "5"))])
    with pytest.raises(IncompleteResultsError, match=r"two different lines for custom_id 'a'.*3"):
        read(client, hostile, clash, 2)


def test_unknown_result_and_error_types_are_kept_and_counted_as_other(
    client: Client,
    hostile: HostileServer,
) -> None:
    novel = {"custom_id": "n", "result": {"type": "deferred", "until": "later"}}
    body = b"\n".join([line(ok("a")), line(novel), line(errored("e", "quota_error"))])
    lines, reader, _ = read(client, hostile, body, 3)
    assert lines[1] == (None, line(novel))  # verbatim
    assert lines[2][0] is not None and lines[2][0].error_type == "other"
    assert reader.stats.other == 1
    assert reader.stats.unknown_types == {"deferred": 1, "quota_error": 1}


def test_a_succeeded_line_without_usage_is_flagged(
    client: Client,
    hostile: HostileServer,
) -> None:
    bare = ok("a")
    del bare["result"]["message"]["usage"]
    _, reader, _ = read(client, hostile, line(bare), 1)
    assert reader.stats.usage_missing == 1


@pytest.mark.parametrize(
    "bad", [b"\xff\xfe", b"\xed\xa0\x80", b"\xc3", b"\xf4\x90\x80\x80"], ids=str
)
def test_invalid_utf8_anywhere_in_a_line_is_an_error_naming_it(
    client: Client,
    hostile: HostileServer,
    bad: bytes,
) -> None:
    broken = line(ok("b")).replace(b'"4"', b'"' + bad + b'"')
    body = line(ok("a")) + b"\n" + broken + b"\n"
    with pytest.raises(MalformedResultLineError, match=r"result line 2 of batch msgbatch_h.*UTF-8"):
        read(client, hostile, body, 2, chunks=(5,))


def test_missing_lines_are_an_error(client: Client, hostile: HostileServer) -> None:
    with pytest.raises(IncompleteResultsError, match="1 result line"):
        read(client, hostile, line(ok("a")), 2)


def test_results_that_are_not_the_batchs_requests_are_refused(
    client: Client,
    hostile: HostileServer,
) -> None:
    body = line(ok("a")) + b"\n" + line(ok("b"))
    lines, _, _ = read(client, hostile, body, 2, digest=ids_digest(["b", "a"]))
    assert len(lines) == 2  # the same ids in another order: ours
    with pytest.raises(ForeignResultsError, match="msgbatch_h does not hold the requests"):
        read(client, hostile, body, 2, digest=ids_digest(["a", "c"]))


@pytest.mark.parametrize("chunks", CHUNKINGS)
def test_cuts_and_5xx_are_resumed_without_a_line_twice(
    client: Client,
    hostile: HostileServer,
    chunks: tuple[int, ...],
) -> None:
    rows = [line(ok(f"r{i}", "x" * (i % 50))) for i in range(40)]
    body = b"\n".join(rows) + b"\n"
    cuts = [len(body) // 4, len(body) // 4 + 3, len(body) // 2, len(body) - 2]
    lines, _, _ = read(client, hostile, body, 40, chunks=chunks, cut_at=cuts, fail_with=[529])
    assert [d for _, d in lines] == rows
    assert hostile.bodies["msgbatch_h"].downloads >= 5


def test_a_download_that_keeps_failing_names_the_batch(
    client: Client,
    hostile: HostileServer,
) -> None:
    with pytest.raises(ResultsDownloadError, match="msgbatch_h: 4 attempt"):
        read(client, hostile, line(ok("a")), 1, fail_with=[500] * 20)


def test_the_final_lines_of_several_attempts(
    client: Client,
    hostile: HostileServer,
) -> None:
    hostile.serve("msgbatch_1", line(ok("a")) + b"\n" + line(errored("b", "api_error")), 2)
    hostile.serve("msgbatch_2", line(ok("b", "late")), 1)
    attempts = [
        Attempt(number=1, batches=[BatchInfo(id="msgbatch_1", request_count=2)]),
        Attempt(number=2, batches=[BatchInfo(id="msgbatch_2", request_count=1, attempt=2)]),
    ]
    known: dict[str, MessageBatch] = {i: client.retrieve(i) for i in ("msgbatch_1", "msgbatch_2")}
    seen: list[bytes] = []
    stats = stream_final_lines(
        Reader(client, LOG), attempts, known, lambda record, data: seen.append(data)
    )
    assert seen == [line(ok("b", "late")), line(ok("a"))]
    assert (stats.lines, stats.superseded) == (2, 1)
