"""Result lines nesting deeper than any parser may go (a tool_use input 100,000 levels deep):
every reader of result lines reads what it needs, and the line itself is kept byte for byte.
"""

from __future__ import annotations

import json
import logging

import msgspec
import pytest

from airflow_batches.api import Client, RetryPolicy
from airflow_batches.api._pricing import load_price_table
from airflow_batches.jobs._descriptor import BatchInfo
from airflow_batches.jobs._nesting import KEPT_DEPTH, decode_deep, shallow
from airflow_batches.jobs.results import (
    DownloadPolicy,
    Reader,
    XComCollector,
    XComTooLargeError,
    scan_result_line,
)
from airflow_batches.jobs.results._checks import custom_id_of
from airflow_batches.jobs.results._join import ResultJoin
from airflow_batches.jobs.results._scan import MalformedResultLineError
from tests.hostile import API_KEY, HostileServer

DEPTH = 100_000
LOG = logging.getLogger("test.deep")


def deep_value(depth: int = DEPTH) -> bytes:
    return b"[" * depth + b"]" * depth


def tool_line(custom_id: str = "deep", depth: int = DEPTH, kind: str = "succeeded") -> bytes:
    """A succeeded line whose tool_use input nests ``depth`` levels, usage after it."""
    head = {
        "custom_id": custom_id,
        "result": {
            "type": kind,
            "message": {
                "id": "msg_01",
                "model": "claude-haiku-4-5",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": "@"}],
                "usage": {"input_tokens": 11, "output_tokens": 7, "cache_read_input_tokens": 3},
            },
        },
    }
    return json.dumps(head).encode().replace(b'"@"', b'{"x":' + deep_value(depth) + b"}")


def plain_line(custom_id: str) -> bytes:
    return json.dumps({"custom_id": custom_id, "result": {"type": "canceled"}}).encode()


def test_each_parser_fails_on_such_a_line_without_help() -> None:
    line = tool_line()
    with pytest.raises(RecursionError):
        msgspec.json.decode(line)
    with pytest.raises(RecursionError):
        json.loads(line)


def test_the_shallow_copy_keeps_the_top_and_nulls_the_depths() -> None:
    line = b'{"a":[[1,[2]],"[[\\"{"],"b":{"c":{"d":[]}},"e":"]]"}'
    assert shallow(line, 2) == b'{"a":[null,"[[\\"{"],"b":{"c":null},"e":"]]"}'
    assert shallow(line, 10) == line
    assert json.loads(shallow(tool_line()))["result"]["message"]["usage"]["output_tokens"] == 7
    cut = shallow(b'{"a":' + b"[" * 50)  # never closes: stays malformed
    with pytest.raises(msgspec.DecodeError):
        msgspec.json.decode(cut)


def test_decode_deep_says_when_it_read_the_copy() -> None:
    value, was_cut = decode_deep(msgspec.json.decode, b'{"a":[1]}')
    assert (value, was_cut) == ({"a": [1]}, False)
    value, was_cut = decode_deep(msgspec.json.decode, tool_line())
    assert was_cut
    nested = value["result"]["message"]["content"][0]["input"]["x"]
    depth = 0
    while isinstance(nested, list):
        nested, depth = (nested[0] if nested else None), depth + 1
    # Above x's arrays: the line, result, message, content, the block and its input.
    assert nested is None and depth == KEPT_DEPTH - 6


def test_the_scan_reads_a_deep_line() -> None:
    record = scan_result_line(tool_line(), batch_id="msgbatch_1", line_number=4)
    assert (record.custom_id, record.result_type, record.model) == (
        "deep",
        "succeeded",
        "claude-haiku-4-5",
    )
    assert (record.input_tokens, record.output_tokens, record.cache_read_input_tokens) == (11, 7, 3)
    assert custom_id_of(tool_line(kind="future_type")) == "deep"


def test_a_deep_line_that_is_not_json_is_still_malformed_naming_it() -> None:
    broken = tool_line()[:-3]
    with pytest.raises(MalformedResultLineError, match="result line 9 of batch msgbatch_1"):
        scan_result_line(broken, batch_id="msgbatch_1", line_number=9)


def test_the_line_checks_pass_a_deep_line_through_verbatim(hostile: HostileServer) -> None:
    body = b"\n".join([plain_line("a"), tool_line(), tool_line("other", kind="future_type")])
    hostile.serve("msgbatch_deep", body + b"\n", 3, chunks=(65_536,))
    policy = DownloadPolicy(retry=RetryPolicy(initial_delay=0, max_delay=0), sleep=lambda s: None)
    with Client(api_key=API_KEY, base_url=hostile.base_url, max_retries=0) as client:
        reader = Reader(client, LOG, policy)
        batch = client.retrieve("msgbatch_deep")
        got = list(reader.lines(BatchInfo(id="msgbatch_deep", request_count=3), batch))
    assert [data for _, data in got] == [
        plain_line("a"),
        tool_line(),
        tool_line("other", kind="future_type"),
    ]
    assert got[1][0] is not None and got[1][0].output_tokens == 7
    assert got[2][0] is None and reader.stats.unknown_types == {"future_type": 1}


class _Writer:
    def __init__(self) -> None:
        self.added: list[tuple[str, str, bytes]] = []
        self.skipped: list[str] = []

    def add(self, custom_id: str, batch_id: str, result: bytes) -> None:
        self.added.append((custom_id, batch_id, result))

    def skip(self, custom_id: str) -> None:
        self.skipped.append(custom_id)


def test_the_join_publishes_a_deep_line_but_does_not_cache_it() -> None:
    writer = _Writer()
    join = ResultJoin(load_price_table(None), writer=writer)  # type: ignore[arg-type]
    join.batch("msgbatch_1")
    deep = tool_line()
    assert join.billed(scan_result_line(deep), "deep", deep) == (deep, None)
    shallow_line = tool_line("flat", depth=3)
    assert join.billed(scan_result_line(shallow_line), "flat", shallow_line) == (shallow_line, None)
    assert [(c, b) for c, b, _ in writer.added] == [("flat", "msgbatch_1")]
    assert writer.skipped == ["deep"]  # its key let go, as an errored line's would be


def test_xcom_refuses_a_line_nesting_past_the_request_bound_naming_it() -> None:
    sink = XComCollector(1 << 30)
    sink(None, plain_line("a"))
    sink(None, tool_line("fifty", depth=50))
    for depth in (DEPTH, 150):  # unparseable, and parseable but too deep to carry
        line = tool_line(depth=depth)
        with pytest.raises(XComTooLargeError, match=r"custom_id 'deep' nests .* more than 100 "):
            sink(scan_result_line(line), line)
    assert [x["custom_id"] for x in sink.items] == ["a", "fifty"]
