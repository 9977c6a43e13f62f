"""What every request carries, and the client's settings."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

import airflow_batches
from airflow_batches.api import (
    DEFAULT_BASE_URL,
    APIStatusError,
    AsyncClient,
    Client,
    ClientSettings,
    RetryPolicy,
)
from tests.api.fakes import API_KEY, Driver, FakeAPI, batch_json, ended_batch, reply

OK = reply(200, batch_json())
DELETED = reply(200, {"id": "msgbatch_01", "type": "message_batch_deleted"})
PAGE = reply(200, {"data": [], "has_more": False})


def call_every_endpoint(client: Driver, api: FakeAPI) -> None:
    api.answers.extend([OK, OK, PAGE, OK, DELETED, reply(200, ended_batch())])
    api.answers.append(reply(200, content=b"", headers={"content-type": "application/x-jsonl"}))
    client.create_from_body(b'{"requests":[]}')
    client.retrieve("msgbatch_01")
    client.list_page()
    client.cancel("msgbatch_01")
    client.delete("msgbatch_01")
    client.results("msgbatch_01")


def test_default_headers_on_every_endpoint(connect: Callable[..., Driver]) -> None:
    api = FakeAPI()
    call_every_endpoint(connect(api), api)
    assert len(api.requests) == 7
    for request in api.requests:
        assert request.headers["x-api-key"] == API_KEY
        assert request.headers["anthropic-version"] == "2023-06-01"
        assert request.headers["user-agent"].startswith(
            f"airflow-batches/{airflow_batches.__version__} "
        )
        assert "authorization" not in request.headers
        assert "anthropic-beta" not in request.headers
        assert "anthropic-workspace-id" not in request.headers
        assert request.url.scheme == "https"


def test_configured_headers_on_every_endpoint(connect: Callable[..., Driver]) -> None:
    api = FakeAPI()
    client = connect(
        api,
        anthropic_version="2026-10-21",
        betas=["output-300k-2026-03-24", " message-batches-2024-09-24 ", ""],
        workspace_id="wrkspc_01ABC",
    )
    call_every_endpoint(client, api)
    for request in api.requests:
        assert request.headers["anthropic-version"] == "2026-10-21"
        assert request.headers["anthropic-beta"] == (
            "output-300k-2026-03-24,message-batches-2024-09-24"
        )
        assert request.headers["anthropic-workspace-id"] == "wrkspc_01ABC"


def test_the_base_url_is_configurable(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(OK)
    connect(api, base_url="http://127.0.0.1:8089/").retrieve("msgbatch_01")
    assert str(api.last.url) == "http://127.0.0.1:8089/v1/messages/batches/msgbatch_01"


def test_settings() -> None:
    with Client(api_key=API_KEY) as client:
        settings = client.settings
    assert isinstance(settings, ClientSettings)
    assert settings.base_url == DEFAULT_BASE_URL == "https://api.anthropic.com"
    assert settings.anthropic_version == "2023-06-01"
    assert settings.timeout == httpx.Timeout(600.0, connect=5.0)
    assert settings.retry == RetryPolicy()
    assert settings.user_agent.startswith("airflow-batches/")


def test_timeouts_are_configurable() -> None:
    with Client(api_key=API_KEY, timeout=30) as client:
        assert client.settings.timeout == httpx.Timeout(30.0, connect=5.0)
        assert client._http.timeout == httpx.Timeout(30.0, connect=5.0)
    with Client(api_key=API_KEY, timeout=2.0) as client:
        assert client.settings.timeout == httpx.Timeout(2.0, connect=2.0)
    custom = httpx.Timeout(10.0, read=99.0)
    with Client(api_key=API_KEY, timeout=custom) as client:
        assert client.settings.timeout is custom


def test_timeouts_reach_the_transport(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(OK)
    connect(api, timeout=12.5).retrieve("msgbatch_01")
    assert api.last.extensions["timeout"] == {
        "connect": 5.0,
        "read": 12.5,
        "write": 12.5,
        "pool": 12.5,
    }


def test_tls_verification_is_on() -> None:
    with Client(api_key=API_KEY) as client:
        pool = client._http._transport._pool  # type: ignore[attr-defined]
        assert pool._ssl_context.verify_mode.name == "CERT_REQUIRED"
        assert pool._ssl_context.check_hostname is True


def test_redirects_are_not_followed(connect: Callable[..., Driver]) -> None:
    # A redirect would resend the key to wherever it points.
    api = FakeAPI(reply(302, content=b"", headers={"location": "https://evil.test/"}))
    with pytest.raises(APIStatusError) as caught:
        connect(api).retrieve("msgbatch_01")
    assert caught.value.status_code == 302
    assert len(api.requests) == 1


@pytest.mark.parametrize("key", ["", None])
def test_a_key_is_required(key: str | None) -> None:
    with pytest.raises(ValueError, match="API key"):
        Client(api_key=key)  # type: ignore[arg-type]


def test_extra_headers_are_per_call(connect: Callable[..., Driver]) -> None:
    api = FakeAPI(OK, OK)
    client = connect(api)
    client.create_from_body(b"{}", extra_headers={"anthropic-user-profile-id": "prof_1"})
    client.retrieve("msgbatch_01")
    assert api.requests[0].headers["anthropic-user-profile-id"] == "prof_1"
    assert "anthropic-user-profile-id" not in api.requests[1].headers


@pytest.mark.parametrize("base_url", ["api.anthropic.com", "ftp://x.test", "127.0.0.1:8089"])
def test_a_base_url_without_http_fails_at_once(base_url: str) -> None:
    with pytest.raises(ValueError, match="base_url must start with"):
        Client(api_key=API_KEY, base_url=base_url)


@pytest.mark.parametrize("cls", [Client, AsyncClient])
def test_a_misspelt_option_fails(cls: type[Client] | type[AsyncClient]) -> None:
    with pytest.raises(TypeError, match="max_retry"):
        cls(api_key=API_KEY, max_retry=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="api_key"):
        cls()  # type: ignore[call-arg]
