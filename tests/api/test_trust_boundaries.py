"""What a lying server cannot make the client do: use an id of another shape, send the key
to another origin, or hold an unbounded amount of a results body.

Scripted answers (``httpx.MockTransport``) where the bytes on the wire do not matter; a real
HTTP server on 127.0.0.1 (tests/lying.py) where they do (compression, an endless body).
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import itertools
import json
import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from airflow_batches.api import (
    AsyncClient,
    BadRequestError,
    Client,
    MessageBatch,
    ResponseValidationError,
    ResultsTooLargeError,
    UntrustedURLError,
)
from airflow_batches.api._bounds import BoundedDecoder
from airflow_batches.api._lines import LineDecoder, LineTooLong, iter_lines
from airflow_batches.api._listing import decode_listed_page
from airflow_batches.api._models import ID_PATTERN, check_id
from airflow_batches.api._settings import DEFAULT_MAX_LINE_BYTES
from airflow_batches.emulator.testing import RunningEmulator
from tests.api.fakes import (
    API_KEY,
    BASE_URL,
    Chunks,
    Driver,
    FakeAPI,
    batch_json,
    ended_batch,
    error_reply,
    reply,
)
from tests.lying import LyingServer, compress, in_chunks

BAD_IDS = [
    "../../../escaped",
    "/etc/cron.d/x",
    "a/b",
    "..",
    "msgbatch_01\nINFO forged log line",
    "msgbatch_01?x=1",
    "b\u00e9",
    "",
    "m" * 129,
]


# --- identifiers ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", BAD_IDS)
def test_a_create_answer_naming_a_bad_batch_id_is_refused(
    connect: Callable[..., Driver], bad_id: str
) -> None:
    api = FakeAPI(reply(200, batch_json(bad_id)))
    with pytest.raises(ResponseValidationError) as caught:
        connect(api).create([{"custom_id": "a", "params": PARAMS}])
    shown = repr(bad_id[:80])
    assert f"batch id {shown}" in str(caught.value)
    assert "is not an identifier of the API's shape" in str(caught.value)


PARAMS = {"model": "claude-haiku-4-5", "max_tokens": 8, "messages": []}


@pytest.mark.parametrize("where", ["data", "last_id", "first_id"])
def test_a_list_page_with_a_bad_id_is_refused(connect: Callable[..., Driver], where: str) -> None:
    page: dict[str, Any] = {"data": [batch_json("msgbatch_ok")], "has_more": True}
    page["first_id"] = page["last_id"] = "msgbatch_ok"
    if where == "data":
        page["data"].append(batch_json("../x"))
    else:
        page[where] = "../x"
    api = FakeAPI(reply(200, page))
    with pytest.raises(ResponseValidationError, match=r"batch id '\.\./x'"):
        connect(api).list_page()
    lean = httpx.Response(200, json=page, request=httpx.Request("GET", BASE_URL))
    with pytest.raises(ResponseValidationError, match=r"batch id '\.\./x'"):
        decode_listed_page(lean)


def test_a_lean_list_page_nesting_too_deep_is_a_validation_error() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    body = b'{"data":[{"id":"msgbatch_1","created_at":"2026-12-01T10:00:00Z","x":' + deep + b"}]"
    body += b',"has_more":false}'
    answer = httpx.Response(200, content=body, request=httpx.Request("GET", BASE_URL))
    with pytest.raises(ResponseValidationError, match="nests too deep"):
        decode_listed_page(answer)


def test_a_result_line_with_a_bad_message_id_is_refused(connect: Callable[..., Driver]) -> None:
    line = {
        "custom_id": "a",
        "result": {
            "type": "succeeded",
            "message": {
                "id": "msg/../../x",
                "model": "claude-haiku-4-5",
                "content": [],
                "usage": {"input_tokens": 1, "output_tokens": 1},
            },
        },
    }
    api = FakeAPI(reply(200, content=json.dumps(line).encode()))
    batch = MessageBatch.model_validate(ended_batch())
    with pytest.raises(ResponseValidationError, match=r"message id 'msg/\.\./\.\./x'"):
        connect(api).results(batch)


def test_a_parsed_result_line_nesting_too_deep_is_an_error_naming_it(
    connect: Callable[..., Driver],
) -> None:
    deep = b'{"custom_id":"a","result":{"type":"canceled","x":' + b"[" * 100_000
    body = b'{"custom_id":"z","result":{"type":"canceled"}}\n' + deep + b"]" * 100_000 + b"}}\n"
    api = FakeAPI(reply(200, content=body))
    batch = MessageBatch.model_validate(ended_batch())
    with pytest.raises(ResponseValidationError, match="batch msgbatch_01, line 2: not a result"):
        connect(api).results(batch)


def test_a_request_id_of_another_shape_is_left_out_of_errors(
    connect: Callable[..., Driver],
) -> None:
    forged = "req_1\x1b[31m FORGED"
    api = FakeAPI(error_reply(400, "invalid_request_error", "no", request_id=forged))
    with pytest.raises(BadRequestError) as caught:
        connect(api).retrieve("msgbatch_1")
    assert "FORGED" not in str(caught.value)
    assert caught.value.request_id is None
    api = FakeAPI(error_reply(400, "invalid_request_error", "no", request_id="req_01AbC-9"))
    with pytest.raises(BadRequestError, match=r"request-id: req_01AbC-9"):
        connect(api).retrieve("msgbatch_1")


def test_the_emulators_own_ids_pass(emulator: RunningEmulator) -> None:
    with Client(api_key=emulator.api_key, base_url=emulator.base_url) as client:
        batch = client.create([{"custom_id": "a", "params": PARAMS | {"messages": MESSAGES}}])
        emulator.wait_ended(batch.id)
        ended = client.retrieve(batch.id)
        [line] = list(client.results(ended))
        listed = client.list_page(limit=5)
    assert check_id(batch.id) == batch.id
    assert listed.data[0].id == batch.id
    assert line.result.type == "succeeded"
    assert check_id(line.result.message.id, "message id")


MESSAGES = [{"role": "user", "content": "hi"}]


# --- origins ----------------------------------------------------------------------------------

FOREIGN = [
    ("https://evil.test/v1/messages/batches/msgbatch_01/results", "https://evil.test:443"),
    (
        "http://api.batches.test/v1/messages/batches/msgbatch_01/results",
        "http://api.batches.test:80",
    ),
    ("https://api.batches.test:8443/r", "https://api.batches.test:8443"),
    ("https://api.batches.test@evil.test/r", "https://evil.test:443"),
    ("https://api.batches.test.evil.test/r", "https://api.batches.test.evil.test:443"),
    ("//evil.test/r", "'//evil.test'"),
    ("ftp://api.batches.test/r", "'ftp://api.batches.test'"),
]


@pytest.mark.parametrize(("url", "origin"), FOREIGN)
def test_a_results_url_on_another_origin_is_refused_before_any_request(
    connect: Callable[..., Driver], url: str, origin: str
) -> None:
    api = FakeAPI()
    batch = MessageBatch.model_validate(ended_batch(results_url=url))
    with pytest.raises(UntrustedURLError) as caught:
        connect(api).iter_result_lines(batch)
    assert api.requests == []  # nothing sent, so no key sent
    message = str(caught.value)
    assert message.startswith(f"batch msgbatch_01: its results_url is on {origin}, not on")
    assert "https://api.batches.test:443" in message
    assert "results_origins" in message
    assert caught.value.batch_id == "msgbatch_01"


@pytest.mark.parametrize(
    ("base_url", "results_url", "sent_to"),
    [
        (BASE_URL, "HTTPS://API.Batches.test:443/v1/r", "https://api.batches.test:443/v1/r"),
        ("https://gw.test/anthropic", "https://gw.test/v1/r", "https://gw.test/v1/r"),
        ("https://gw.test/anthropic", "v1/r", "https://gw.test/anthropic/v1/r"),
        ("https://gw.test/anthropic", "//evil.test/r", None),
    ],
)
def test_the_apis_own_origin_is_followed_whatever_the_path(
    connect: Callable[..., Driver], base_url: str, results_url: str, sent_to: str | None
) -> None:
    api = FakeAPI(reply(200, content=b'{"custom_id":"a","result":{"type":"canceled"}}\n'))
    batch = MessageBatch.model_validate(ended_batch(results_url=results_url))
    client = connect(api, base_url=base_url)
    if sent_to is None:
        with pytest.raises(UntrustedURLError):
            client.iter_result_lines(batch)
        assert api.requests == []
        return
    assert len(client.iter_result_lines(batch)) == 1
    assert str(api.last.url) == sent_to
    assert api.last.headers["x-api-key"] == API_KEY


def test_results_origins_let_a_gateway_serve_results(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(reply(200, content=b'{"custom_id":"a","result":{"type":"canceled"}}\n'))
    batch = MessageBatch.model_validate(ended_batch(results_url="https://files.gw.test:9443/r"))
    client = connect(api, results_origins="https://other.test, https://FILES.gw.test:9443/")
    assert len(client.iter_result_lines(batch)) == 1
    assert str(api.last.url) == "https://files.gw.test:9443/r"


@pytest.mark.parametrize("bad", ["files.gw.test", "https://gw.test/path", "ftp://gw.test", "//x"])
def test_a_results_origin_must_be_an_origin(bad: str) -> None:
    with pytest.raises(ValueError, match=r"results_origins: .* is not an origin"):
        Client(api_key=API_KEY, results_origins=[bad])


# --- bounded decoding -------------------------------------------------------------------------


def _bomb(inflated: int, encoding: str, piece: bytes = b"x" * (1 << 20)) -> bytes:
    return b"".join(compress(itertools.repeat(piece, inflated // len(piece)), encoding))


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_compressed_body_is_inflated_in_bounded_steps(encoding: str) -> None:
    packed = _bomb(64 << 20, encoding)
    assert len(packed) < 128 << 10
    decoder = BoundedDecoder(encoding, "msgbatch_1", chunk=256 << 10)
    total = 0
    for at in range(0, len(packed), 64 << 10):
        for out in decoder.decode(packed[at : at + (64 << 10)]):
            assert len(out) <= 256 << 10
            total += len(out)
    total += len(decoder.flush())
    assert total == 64 << 20


def test_raw_deflate_and_several_gzip_members_decode() -> None:
    body = b'{"a":1}\n' * 1000
    raw = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    packed = raw.compress(body) + raw.flush()
    decoder = BoundedDecoder("deflate", "msgbatch_1", chunk=100)
    assert b"".join([*decoder.decode(packed), decoder.flush()]) == body
    members = gzip.compress(body[:3000]) + gzip.compress(body[3000:])
    decoder = BoundedDecoder("gzip", "msgbatch_1", chunk=100)
    out = [x for i in range(0, len(members), 7) for x in decoder.decode(members[i : i + 7])]
    assert b"".join([*out, decoder.flush()]) == body


def test_a_cut_short_or_corrupt_or_unasked_encoding_is_refused() -> None:
    packed = gzip.compress(b"line\n" * 100)
    decoder = BoundedDecoder("gzip", "msgbatch_1")
    list(decoder.decode(packed[:-12]))
    with pytest.raises(ResponseValidationError, match="msgbatch_1: the gzip answer ends before"):
        decoder.flush()
    with pytest.raises(ResponseValidationError, match="does not decode"):
        list(BoundedDecoder("gzip", "msgbatch_1").decode(b"not gzip at all"))
    with pytest.raises(ResponseValidationError, match="content-encoding 'br' is not one"):
        BoundedDecoder("br", "msgbatch_1")


# --- bounded lines and bodies -----------------------------------------------------------------


def counted(n: int) -> dict[str, int]:
    return {"processing": 0, "succeeded": n, "errored": 0, "canceled": 0, "expired": 0}


@pytest.mark.parametrize("chunk", [7, 1000, 1 << 20])
def test_a_line_past_max_line_bytes_stops_the_download_naming_it(
    connect: Callable[..., Driver], chunk: int
) -> None:
    lines = [b'{"n":1}', b'{"n":"' + b"x" * 5000 + b'"}', b'{"n":3}']
    body = b"\n".join(lines) + b"\n"
    pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)]
    api = FakeAPI(lambda r: httpx.Response(200, stream=Chunks(pieces)))
    batch = MessageBatch.model_validate(ended_batch(request_counts=counted(3)))
    with pytest.raises(ResultsTooLargeError) as caught:
        connect(api, max_line_bytes=1000).iter_result_lines(batch)
    assert str(caught.value).startswith(
        "results of batch msgbatch_01: line 2 is longer than max_line_bytes (1,000 bytes)"
    )
    assert caught.value.batch_id == "msgbatch_01"


def test_a_stream_opened_by_hand_bounds_its_lines_too() -> None:
    first = b'{"custom_id":"a","result":{"type":"canceled"}}'
    body = first + b"\n" + b"x" * 3000 + b"\n"
    pieces = [body[i : i + 100] for i in range(0, len(body), 100)]
    api = FakeAPI(default=lambda r: httpx.Response(200, stream=Chunks(pieces)))
    batch = MessageBatch.model_validate(ended_batch())
    options = {"api_key": API_KEY, "base_url": BASE_URL, "transport": api.transport}
    got: list[bytes] = []
    with (
        Client(**options, max_line_bytes=1000) as client,
        client.stream_results(batch) as stream,
        pytest.raises(ResultsTooLargeError, match="msgbatch_01: line 2 is longer than"),
    ):
        got.extend(stream.iter_lines())
    assert got == [first]

    async def by_hand() -> None:
        async with (
            AsyncClient(**options, max_line_bytes=1000) as client,
            client.stream_results(batch) as stream,
        ):
            async for _ in stream.aiter_results():
                pass

    with pytest.raises(ResultsTooLargeError, match="msgbatch_01: line 2 is longer than"):
        asyncio.run(by_hand())


def test_the_line_decoder_bound_counts_blank_lines() -> None:
    decoder = LineDecoder(keep_blank=True, max_line_bytes=4)
    assert decoder.feed(b"ab\n\ncd") == [b"ab", b""]
    with pytest.raises(LineTooLong, match="line 3 is longer than 4 bytes"):
        decoder.feed(b"efg")
    assert list(iter_lines([b"abcd\n", b"abcd"], max_line_bytes=4)) == [b"abcd", b"abcd"]


def test_the_default_line_limit_is_64_mib() -> None:
    assert DEFAULT_MAX_LINE_BYTES == 64 * 1024 * 1024
    assert Client(api_key=API_KEY).settings.max_line_bytes == DEFAULT_MAX_LINE_BYTES
    with pytest.raises(ValueError, match="max_line_bytes must be >= 1"):
        Client(api_key=API_KEY, max_line_bytes=0)


def test_a_body_longer_than_its_batch_stops_where_it_passes_the_slack() -> None:
    line = b'{"custom_id":"a","result":{"type":"canceled"}}\n'
    api = FakeAPI(lambda r: httpx.Response(200, stream=Chunks([line] * 1000)))
    batch = MessageBatch.model_validate(ended_batch(request_counts=counted(2)))
    got: list[bytes] = []
    with (
        Client(api_key=API_KEY, base_url=BASE_URL, transport=api.transport) as client,
        pytest.raises(ResultsTooLargeError) as caught,
    ):
        got.extend(client.iter_result_lines(batch))
    assert len(got) == 12  # two requests, plus the slack of 10; line 13 never handed out
    assert str(caught.value).startswith(
        "results of batch msgbatch_01: line 13 is past the 12 lines its 2 request(s) can have"
    )


# --- over the wire ----------------------------------------------------------------------------


def _read(client_cls: type, lying: LyingServer, batch_id: str, **options: Any) -> list[bytes]:
    kwargs = {"api_key": API_KEY, "base_url": lying.base_url, "max_retries": 0, **options}
    if client_cls is Client:
        with Client(**kwargs) as client:
            return list(client.iter_result_lines(client.retrieve(batch_id)))

    async def run() -> list[bytes]:
        async with AsyncClient(**kwargs) as client:
            batch = await client.retrieve(batch_id)
            return [x async for x in client.iter_result_lines(batch)]

    return asyncio.run(run())


@functools.cache
def packed_bomb(encoding: str) -> bytes:
    """One short line, then a line of 256 MiB: about 256 KiB compressed."""
    first = b'{"custom_id":"a","result":{"type":"canceled"}}\n'
    pieces = itertools.chain([first], itertools.repeat(b"x" * (1 << 20), 256))
    return b"".join(compress(pieces, encoding))


@pytest.mark.parametrize("client_cls", [Client, AsyncClient])
@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_compression_bomb_stops_at_the_line_limit_in_bounded_memory(
    lying: LyingServer, client_cls: type, encoding: str
) -> None:
    # Sent 64 KiB at a time: each network read inflates to about 64 MiB, which httpx's own
    # decoding would hold at once.
    lying.serve("msgbatch_bomb", b"", 2, encoding=encoding).chunks = in_chunks(
        packed_bomb(encoding), 64 << 10
    )
    tracemalloc.start()
    try:
        with pytest.raises(ResultsTooLargeError) as caught:
            _read(client_cls, lying, "msgbatch_bomb", max_line_bytes=4 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(caught.value).startswith(
        "results of batch msgbatch_bomb: line 2 is longer than max_line_bytes (4,194,304 bytes)"
    )
    assert peak < 16 << 20, f"peak {peak / (1 << 20):.1f} MiB"


@pytest.mark.parametrize("client_cls", [Client, AsyncClient])
def test_an_endless_body_is_stopped_past_its_batch(lying: LyingServer, client_cls: type) -> None:
    line = b'{"custom_id":"a","result":{"type":"canceled"}}\n'
    served = lying.serve("msgbatch_endless", b"", 5)
    served.chunks = lambda: itertools.repeat(line * 3)
    with pytest.raises(ResultsTooLargeError, match="line 16 is past the 15 lines its 5 request"):
        _read(client_cls, lying, "msgbatch_endless")


def test_the_id_pattern_is_documented_as_checked() -> None:
    assert ID_PATTERN == r"^[A-Za-z0-9_-]{1,128}$"
