"""HTTP error statuses and transport failures, mapped to one exception tree that pickles."""

from __future__ import annotations

import pickle
import socket
from collections.abc import Callable

import httpx
import pytest

from airflow_batches.api import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BatchesError,
    Client,
    ConflictError,
    GatewayTimeoutError,
    InternalServerError,
    NotFoundError,
    OverloadedError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    RequestTooLargeError,
    ResponseValidationError,
    ResultsExpiredError,
    ResultsNotReadyError,
    ServiceUnavailableError,
    UnprocessableEntityError,
)
from tests.api.fakes import API_KEY, Driver, FakeAPI, batch_json, error_reply, raise_, reply

STATUS_TABLE = [
    (400, "invalid_request_error", BadRequestError),
    (401, "authentication_error", AuthenticationError),
    (402, "billing_error", PaymentRequiredError),
    (403, "permission_error", PermissionDeniedError),
    (404, "not_found_error", NotFoundError),
    (408, "timeout_error", RequestTimeoutError),
    (409, "conflict_error", ConflictError),
    (413, "request_too_large", RequestTooLargeError),
    (422, "invalid_request_error", UnprocessableEntityError),
    (429, "rate_limit_error", RateLimitError),
    (500, "api_error", InternalServerError),
    (502, "api_error", InternalServerError),
    (503, "api_error", ServiceUnavailableError),
    (504, "timeout_error", GatewayTimeoutError),
    (529, "overloaded_error", OverloadedError),
    (418, "teapot_error", APIStatusError),
    (451, "legal_error", APIStatusError),
    (599, "api_error", InternalServerError),
]


@pytest.mark.parametrize(("status", "error_type", "cls"), STATUS_TABLE)
def test_every_status_maps_to_its_class(
    connect: Callable[..., Driver], status: int, error_type: str, cls: type[APIStatusError]
) -> None:
    api = FakeAPI(error_reply(status, error_type, "the API says no", request_id="req_0123"))
    client = connect(api, max_retries=0)
    with pytest.raises(APIStatusError) as caught:
        client.retrieve("msgbatch_01")
    exc = caught.value
    assert type(exc) is cls
    assert isinstance(exc, BatchesError)
    assert exc.status_code == status
    assert exc.error_type == error_type
    assert exc.message == "the API says no"
    assert exc.request_id == "req_0123"
    assert exc.context == "GET /v1/messages/batches/msgbatch_01"
    assert str(exc) == (
        f"{status} {error_type}: GET /v1/messages/batches/msgbatch_01: the API says no "
        "(request-id: req_0123)"
    )
    assert len(api.requests) == 1


def test_server_errors_share_a_parent() -> None:
    for cls in (ServiceUnavailableError, GatewayTimeoutError, OverloadedError):
        assert issubclass(cls, InternalServerError)
    assert issubclass(APITimeoutError, APIConnectionError)
    assert issubclass(ResultsExpiredError, ResultsNotReadyError)
    for cls in (APIConnectionError, APIStatusError, ResponseValidationError, ResultsNotReadyError):
        assert issubclass(cls, BatchesError)


def test_413_from_a_proxy_with_a_non_json_body(connect: Callable[..., Driver]) -> None:
    html = b"<html><head><title>413 Request Entity Too Large</title></head><body>nginx</body>"
    api = FakeAPI(reply(413, content=html, headers={"content-type": "text/html"}))
    client = connect(api, max_retries=3)
    with pytest.raises(RequestTooLargeError) as caught:
        client.create_from_body(b'{"requests":[]}')
    exc = caught.value
    assert exc.status_code == 413
    assert exc.error_type is None
    assert "413 Request Entity Too Large" in exc.message
    assert exc.request_id == "req_ok"
    assert len(api.requests) == 1  # never retried


def test_empty_error_body_uses_the_reason_phrase(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(reply(502, content=b""), default=reply(502, content=b""))
    client = connect(api, max_retries=0)
    with pytest.raises(InternalServerError) as caught:
        client.retrieve("msgbatch_01")
    assert caught.value.status_code == 502
    assert caught.value.message == "Bad Gateway"


def test_request_id_from_the_body_when_the_header_is_missing(
    connect: Callable[..., Driver],
) -> None:
    body = {
        "type": "error",
        "error": {"type": "not_found_error", "message": "no such batch"},
        "request_id": "req_body",
    }
    api = FakeAPI(lambda request: httpx.Response(404, json=body))
    with pytest.raises(NotFoundError) as caught:
        connect(api).retrieve("msgbatch_01")
    assert caught.value.request_id == "req_body"


def test_error_body_with_unknown_fields(connect: Callable[..., Driver]) -> None:
    body = {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down", "details": {"x": 1}},
        "request_id": "req_9",
        "new": True,
    }
    api = FakeAPI(lambda request: httpx.Response(429, json=body))
    with pytest.raises(RateLimitError) as caught:
        connect(api, max_retries=0).retrieve("msgbatch_01")
    assert caught.value.error_type == "rate_limit_error"
    assert caught.value.message == "slow down"


def test_retry_after_is_carried_by_the_exception(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(error_reply(429, "rate_limit_error", headers={"retry-after": "17"}))
    with pytest.raises(RateLimitError) as caught:
        connect(api, max_retries=0).retrieve("msgbatch_01")
    assert caught.value.retry_after == 17.0


# --- transport failures ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("httpx_error", "cls"),
    [
        (httpx.ConnectError, APIConnectionError),
        (httpx.ReadError, APIConnectionError),
        (httpx.WriteError, APIConnectionError),
        (httpx.RemoteProtocolError, APIConnectionError),
        (httpx.ConnectTimeout, APITimeoutError),
        (httpx.ReadTimeout, APITimeoutError),
        (httpx.WriteTimeout, APITimeoutError),
        (httpx.PoolTimeout, APITimeoutError),
    ],
)
def test_transport_errors_are_mapped_and_retried(
    connect: Callable[..., Driver],
    httpx_error: type[httpx.TransportError],
    cls: type[APIConnectionError],
) -> None:
    api = FakeAPI(default=raise_(httpx_error, "the wire broke"))
    client = connect(api, max_retries=3)
    with pytest.raises(APIConnectionError) as caught:
        client.retrieve("msgbatch_01")
    exc = caught.value
    assert type(exc) is cls
    assert isinstance(exc.__cause__, httpx_error)
    assert exc.method == "GET"
    assert exc.url == "https://api.batches.test/v1/messages/batches/msgbatch_01"
    assert "the wire broke" in str(exc)
    assert len(api.requests) == 4
    assert len(client.sleeps) == 3


def test_transport_error_then_success(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(raise_(httpx.ConnectError), raise_(httpx.ReadTimeout), reply(200, batch_json()))
    client = connect(api)
    assert client.retrieve("msgbatch_01").id == "msgbatch_01"
    assert len(api.requests) == 3
    assert len(client.sleeps) == 2


def test_refused_connection_on_loopback_is_an_api_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port now: a real ConnectError from the real transport.
    sleeps: list[float] = []
    with (
        Client(
            api_key=API_KEY, base_url=f"http://127.0.0.1:{port}", max_retries=1, sleep=sleeps.append
        ) as client,
        pytest.raises(APIConnectionError) as caught,
    ):
        client.retrieve("msgbatch_01")
    assert type(caught.value) is APIConnectionError
    assert caught.value.url == f"http://127.0.0.1:{port}/v1/messages/batches/msgbatch_01"
    assert len(sleeps) == 1


# --- pickling -------------------------------------------------------------------------------

EXAMPLES: list[BatchesError] = [
    BatchesError("root"),
    APIConnectionError("refused", method="GET", url="https://h/v1/messages/batches"),
    APITimeoutError("slow", method="POST", url="https://h/v1/messages/batches"),
    APIStatusError("odd", status_code=418, error_type="teapot", request_id="r1"),
    *[
        cls(
            "msg",
            status_code=status,
            error_type=error_type,
            request_id="req_1",
            retry_after=2.5,
            context="GET /v1/messages/batches/x",
        )
        for status, error_type, cls in STATUS_TABLE
    ],
    RequestTooLargeError("proxy said no"),
    ResponseValidationError("bad body", request_id="req_2"),
    ResponseValidationError("bad body"),
    ResultsNotReadyError("not yet", batch_id="msgbatch_1"),
    ResultsExpiredError("gone", batch_id="msgbatch_2"),
]


@pytest.mark.parametrize("exc", EXAMPLES, ids=lambda e: f"{type(e).__name__}-{e}")
def test_every_exception_survives_pickle(exc: BatchesError) -> None:
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        copy = pickle.loads(pickle.dumps(exc, protocol=protocol))
        assert type(copy) is type(exc)
        assert str(copy) == str(exc)
        assert repr(copy) == repr(exc)
        assert vars(copy) == vars(exc)


def test_pickle_keeps_the_fields_of_a_status_error() -> None:
    exc = OverloadedError(
        "busy", error_type="overloaded_error", request_id="req_5", retry_after=3.0, context="POST /"
    )
    copy = pickle.loads(pickle.dumps(exc))
    assert (copy.status_code, copy.error_type, copy.message, copy.request_id) == (
        529,
        "overloaded_error",
        "busy",
        "req_5",
    )
    assert (copy.retry_after, copy.context) == (3.0, "POST /")


def test_status_code_defaults_to_the_class() -> None:
    assert NotFoundError("x").status_code == 404
    assert str(NotFoundError("x")) == "404 error: x"


def test_an_exception_raised_by_the_client_pickles(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(error_reply(404, "not_found_error", "gone", request_id="req_z"))
    with pytest.raises(NotFoundError) as caught:
        connect(api).retrieve("msgbatch_01")
    copy = pickle.loads(pickle.dumps(caught.value))
    assert str(copy) == str(caught.value)
    assert copy.request_id == "req_z"
