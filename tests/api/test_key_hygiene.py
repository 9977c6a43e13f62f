"""The API key never shows: not in logs, exceptions, pickles, reprs or str() of anything."""

from __future__ import annotations

import http.server
import pickle
import socket
import threading
import traceback
from collections.abc import Callable, Iterator

import httpx
import pytest

from airflow_batches.api import (
    APIConnectionError,
    APIStatusError,
    AsyncClient,
    BatchesError,
    Client,
    Secret,
)
from airflow_batches.api._settings import make_settings
from tests.api.fakes import (
    API_KEY,
    Driver,
    FakeAPI,
    batch_json,
    debug_logging,
    error_reply,
    raise_,
    reply,
)

# The key's distinctive middle: also catches a key that was cut or partly masked.
NEEDLE = "must-never-leak"


def assert_no_key(text: str) -> None:
    assert API_KEY not in text
    assert NEEDLE not in text


def exception_texts(exc: BaseException) -> Iterator[str]:
    yield str(exc)
    yield repr(exc)
    yield "".join(traceback.format_exception(exc))
    yield repr(vars(exc))
    yield pickle.dumps(exc).decode("latin-1")


def test_logs_across_retries_and_errors(
    connect: Callable[..., Driver], caplog: pytest.LogCaptureFixture
) -> None:
    api = FakeAPI(
        error_reply(529, "overloaded_error"),
        raise_(httpx.ConnectError),
        raise_(httpx.ReadTimeout),
        error_reply(401, "authentication_error", "invalid x-api-key"),
    )
    client = connect(api, max_retries=5)
    with debug_logging(caplog), pytest.raises(APIStatusError) as caught:
        client.retrieve("msgbatch_01")
    assert len(api.requests) == 4
    # The key was really sent: it could have leaked.
    assert all(r.headers["x-api-key"] == API_KEY for r in api.requests)
    # httpx's own logger and ours both spoke, and neither said the key.
    loggers = {record.name for record in caplog.records}
    assert "httpx" in loggers
    assert any(name.startswith("airflow_batches") for name in loggers)
    assert_no_key(caplog.text)
    for record in caplog.records:
        assert_no_key(repr(record.args))
    for text in exception_texts(caught.value):
        assert_no_key(text)


def test_exceptions_of_every_kind(connect: Callable[..., Driver]) -> None:
    failures: list[BatchesError] = []
    for answer in (
        error_reply(400, "invalid_request_error", "bad"),
        error_reply(413, "request_too_large"),
        raise_(httpx.ConnectError, "refused"),
        reply(200, content=b"{not json"),
    ):
        api = FakeAPI(answer)
        with pytest.raises(BatchesError) as caught:
            connect(api, max_retries=0).retrieve("msgbatch_01")
        failures.append(caught.value)
    assert {type(f).__name__ for f in failures} == {
        "BadRequestError",
        "RequestTooLargeError",
        "APIConnectionError",
        "ResponseValidationError",
    }
    for failure in failures:
        for text in exception_texts(failure):
            assert_no_key(text)


def test_client_and_settings_reprs() -> None:
    with Client(api_key=API_KEY, workspace_id="wrkspc_1") as client:
        for text in (repr(client), str(client), repr(client.settings), str(client.settings)):
            assert_no_key(text)
            assert "**********" in text
        assert "wrkspc_1" in repr(client.settings)


@pytest.mark.anyio
async def test_async_client_repr() -> None:
    async with AsyncClient(api_key=API_KEY) as client:
        assert_no_key(repr(client))
        assert_no_key(str(client))


def test_secret() -> None:
    secret = Secret(API_KEY)
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", "%s" % (secret,)):  # noqa: UP031
        assert_no_key(text)
    assert secret.get_secret_value() == API_KEY
    assert bool(secret) is True
    assert bool(Secret("")) is False


def test_secrets_and_settings_refuse_to_pickle() -> None:
    # A pickled client setting would write the key to wherever the pickle goes.
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(Secret(API_KEY))
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(make_settings(api_key=API_KEY))


# --- a real socket, so that httpcore's debug logs run too -----------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    seen_keys: list[str] = []
    statuses: list[int] = []

    def do_GET(self) -> None:
        type(self).seen_keys.append(self.headers.get("x-api-key", ""))
        status = type(self).statuses.pop(0) if type(self).statuses else 200
        body = (
            httpx.Response(200, json=batch_json()).content
            if status == 200
            else b'{"type":"error","error":{"type":"overloaded_error","message":"busy"}}'
        )
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the server's own access log is not under test


@pytest.fixture
def loopback() -> Iterator[str]:
    _Handler.seen_keys = []
    _Handler.statuses = [529, 500]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_logs_over_a_real_connection(loopback: str, caplog: pytest.LogCaptureFixture) -> None:
    sleeps: list[float] = []
    with (
        debug_logging(caplog),
        Client(api_key=API_KEY, base_url=loopback, sleep=sleeps.append) as client,
    ):
        batch = client.retrieve("msgbatch_01")
    assert batch.id == "msgbatch_01"
    assert _Handler.seen_keys == [API_KEY] * 3
    assert len(sleeps) == 2
    loggers = {record.name for record in caplog.records}
    assert {"httpx", "httpcore.http11", "httpcore.connection"} <= loggers
    assert_no_key(caplog.text)


def test_connection_error_over_a_real_socket(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (
        debug_logging(caplog),
        Client(
            api_key=API_KEY, base_url=f"http://127.0.0.1:{port}", sleep=lambda s: None
        ) as client,
        pytest.raises(APIConnectionError) as caught,
    ):
        client.list_page()
    assert_no_key(caplog.text)
    for text in exception_texts(caught.value):
        assert_no_key(text)
