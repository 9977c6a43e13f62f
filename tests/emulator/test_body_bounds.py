"""Every request body the emulator reads is bounded: 413 ``request_too_large`` past the bound,
with or without ``Content-Length``, and the rest is never read; legitimate bodies still pass.

The raw-socket tests prove "never read": a declared length far over the bound is answered
before a byte of body is sent, and an endless chunked body is answered while it is still
being sent.
"""

from __future__ import annotations

import json
import re
import select
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from airflow_batches.emulator.bodies import ADMIN_MAX_BODY_BYTES, MESSAGE_MAX_BODY_BYTES
from airflow_batches.emulator.config import EmulatorConfig
from airflow_batches.emulator.testing import RunningEmulator
from airflow_batches.jobs.prepare._limits import DEFAULT_MAX_BYTES
from tests.emulator.conftest import MODEL, request, requests

LIMIT = 20_000
API = {"anthropic-version": "2023-06-01", "content-type": "application/json"}
CREATE = "/v1/messages/batches"


@pytest.fixture
def small(emulator_factory: Callable[..., RunningEmulator]) -> RunningEmulator:
    return emulator_factory(max_body_bytes=LIMIT)


def _create_body(size: int) -> bytes:
    """A valid create body of exactly ``size`` bytes (JSON allows trailing blanks)."""
    body = json.dumps({"requests": requests(3)}).encode()
    assert len(body) <= size
    return body + b" " * (size - len(body))


def _chunks(data: bytes, size: int = 4096) -> Iterator[bytes]:
    # A generator: httpx sends it chunked, without Content-Length.
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _post(em: RunningEmulator, path: str, content: Any, **headers: str) -> httpx.Response:
    auth = {"x-api-key": em.api_key} if path.startswith("/v1") else {}
    return httpx.post(
        em.base_url + path, content=content, headers={**API, **auth, **headers}, timeout=60
    )


def _too_large(response: httpx.Response, *words: str) -> str:
    assert response.status_code == 413, response.text
    error = response.json()
    assert error["type"] == "error" and error["request_id"] == response.headers["request-id"]
    assert error["error"]["type"] == "request_too_large"
    message: str = error["error"]["message"]
    assert message.startswith("Request exceeds the maximum allowed number of bytes: ")
    for word in words:
        assert word in message
    return message


def _nothing_left(em: RunningEmulator) -> None:
    assert em.admin.batches_created() == 0
    assert not any((em.data_dir / "incoming").iterdir())


@pytest.mark.parametrize("chunked", [False, True])
def test_a_create_at_the_bound_passes_one_byte_more_is_a_413(
    small: RunningEmulator, chunked: bool
) -> None:
    def send(size: int) -> httpx.Response:
        body = _create_body(size)
        return _post(small, CREATE, _chunks(body) if chunked else body)

    message = _too_large(send(LIMIT + 1), f"{LIMIT}", "(max_body_bytes)")
    if chunked:
        assert "more than 20000, sent without Content-Length" in message
    else:
        assert f"{LIMIT + 1} > {LIMIT}" in message
    _nothing_left(small)
    assert send(LIMIT).status_code == 200
    assert small.admin.batches()[0]["body_bytes"] == LIMIT


@pytest.mark.parametrize("chunked", [False, True])
def test_an_admin_body_past_1_mib_is_a_413_and_changes_nothing(
    emulator: RunningEmulator, chunked: bool
) -> None:
    body = json.dumps({"paused": True, "models": ["m" * 1000] * 1100}).encode()
    assert len(body) > ADMIN_MAX_BODY_BYTES
    response = _post(emulator, "/_emulator/config", _chunks(body) if chunked else body)
    _too_large(response, f"{ADMIN_MAX_BODY_BYTES}", "(an admin request, 1 MiB)")
    assert emulator.admin.config()["paused"] is False
    assert len(_post(emulator, "/_emulator/config", json.dumps({"paused": True})).text) < 10_000
    assert emulator.admin.config()["paused"] is True


@pytest.mark.parametrize("chunked", [False, True])
def test_a_count_tokens_body_past_32_mib_is_a_413(emulator: RunningEmulator, chunked: bool) -> None:
    text = "x" * (MESSAGE_MAX_BODY_BYTES + 1)
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": text}]})
    response = _post(
        emulator, "/v1/messages/count_tokens", _chunks(body.encode(), 1 << 20) if chunked else body
    )
    _too_large(response, f"{MESSAGE_MAX_BODY_BYTES}", "(a Messages request, 32 MB)")


def _raw_request(port: int, path: str, headers: dict[str, str]) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def _read_answer(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536) or b"!"  # b"!" marks a closed connection below
        assert not data.endswith(b"!"), data
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])  # type: ignore[index]
    while len(rest) < length:
        more = sock.recv(65536)
        assert more, "the connection closed before the answer's body"
        rest += more
    return int(head.split()[1]), json.loads(rest[:length])


@pytest.mark.parametrize(
    ("path", "bound"),
    [(CREATE, LIMIT), ("/_emulator/config", ADMIN_MAX_BODY_BYTES)],
)
def test_a_declared_length_over_the_bound_is_answered_before_any_body(
    small: RunningEmulator, path: str, bound: int
) -> None:
    headers = {**API, "x-api-key": small.api_key, "content-length": str(10 * 1024**3)}
    with _raw_request(small.port, path, headers) as sock:
        # Not a byte of the 10 GiB is sent: a server waiting for it would time out here.
        status, answer = _read_answer(sock)
    assert status == 413
    assert f"{10 * 1024**3} > {bound}" in answer["error"]["message"]
    _nothing_left(small)


@pytest.mark.parametrize(
    ("path", "bound"),
    [(CREATE, LIMIT), ("/_emulator/config", ADMIN_MAX_BODY_BYTES)],
)
def test_an_endless_chunked_body_is_answered_while_it_is_still_sent(
    small: RunningEmulator, path: str, bound: int
) -> None:
    headers = {**API, "x-api-key": small.api_key, "transfer-encoding": "chunked"}
    chunk = b"%x\r\n%s\r\n" % (16384, b" " * 16384)
    sent = 0
    with _raw_request(small.port, path, headers) as sock:
        sock.sendall(b'4\r\n{"a"\r\n')
        # Keep sending until the answer is there; a server reading to the end never answers.
        while not select.select([sock], [], [], 0)[0]:
            assert sent < bound + 64 * 1024 * 1024, "no answer while the body kept coming"
            sock.sendall(chunk)
            sent += 16384
        status, answer = _read_answer(sock)
    assert status == 413
    assert f"more than {bound}, sent without Content-Length" in answer["error"]["message"]
    _nothing_left(small)


def test_the_create_bound_holds_every_body_our_sharding_sends() -> None:
    # jobs shards at 256,000,000 bytes of body; the emulator's bound is the API's 256 MB read
    # the lenient (binary) way, so a legitimate full shard is never a 413.
    assert EmulatorConfig().max_body_bytes == 256 * 1024 * 1024 > DEFAULT_MAX_BYTES


def test_legitimate_calls_still_pass(emulator: RunningEmulator, tmp_path: Path) -> None:
    with anthropic.Anthropic(
        api_key=emulator.api_key, base_url=emulator.base_url, max_retries=0
    ) as sdk:
        batch = sdk.messages.batches.create(requests=requests(40))  # type: ignore[arg-type]
        counted = sdk.messages.count_tokens(
            model=MODEL, messages=[{"role": "user", "content": "y" * 400_000}]
        )
        emulator.wait_ended(batch.id)
        assert len(list(sdk.messages.batches.results(batch.id))) == 40
    assert counted.input_tokens > 90_000
    # A chunked create (a streaming client) of a few hundred KiB is read in full.
    body = json.dumps({"requests": [request(f"r{i}", "z" * 4000) for i in range(100)]}).encode()
    response = _post(emulator, CREATE, _chunks(body, 65536))
    assert response.status_code == 200, response.text
    assert emulator.admin.batch(response.json()["id"])["body_bytes"] == len(body)


def test_every_body_the_emulator_reads_goes_through_the_bounded_reader() -> None:
    package = Path(__file__).resolve().parents[2] / "airflow_batches" / "emulator"
    readers = re.compile(r"\b(?:request|self)\.(?:body|stream|json|form)\(|\breceive\(\)")
    unbounded = {
        path.name: line.strip()
        for path in package.glob("*.py")
        if path.name != "bodies.py"
        for line in path.read_text().splitlines()
        if readers.search(line)
    }
    assert unbounded == {}
