"""MessageBatchesHook: connections from AIRFLOW_CONN_... variables, clients, test_connection."""

from __future__ import annotations

import json
import pickle
import socket
from typing import Any

import httpx
import pytest

from airflow_batches.api import (
    DEFAULT_BASE_URL,
    AsyncClient,
    AuthenticationError,
    Client,
    RetryPolicy,
    ServiceUnavailableError,
)
from airflow_batches.hooks.batches import MessageBatchesHook
from airflow_batches.provider_info import get_provider_info
from tests.api.fakes import (
    API_KEY,
    FakeAPI,
    batch_json,
    debug_logging,
    error_reply,
    raise_,
    reply,
)

NEEDLE = "must-never-leak"
PAGE = reply(200, {"data": [], "has_more": False, "first_id": None, "last_id": None})


def json_conn(**fields: Any) -> str:
    return json.dumps({"conn_type": "message_batches", "password": API_KEY, **fields})


@pytest.fixture
def conn(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``conn(conn_id, value)`` defines a connection the way a deployment does: an env var."""

    def define(conn_id: str, value: str) -> None:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", value)

    return define


def test_json_connection_with_every_extra(conn: Any) -> None:
    conn(
        "mb_json",
        json_conn(
            host="http://127.0.0.1:8089/",
            extra={
                "anthropic_version": "2026-10-21",
                "betas": ["output-300k-2026-03-24", "message-batches-2024-09-24"],
                "workspace_id": "wrkspc_01",
                "default_model": "claude-haiku-4-5",
                "timeout": 42,
                "max_retries": 7,
            },
        ),
    )
    hook = MessageBatchesHook("mb_json")
    config = hook.config
    assert config.api_key.get_secret_value() == API_KEY
    assert config.base_url == "http://127.0.0.1:8089"
    assert config.anthropic_version == hook.anthropic_version == "2026-10-21"
    assert config.betas == ("output-300k-2026-03-24", "message-batches-2024-09-24")
    assert config.workspace_id == "wrkspc_01"
    assert config.default_model == hook.default_model == "claude-haiku-4-5"
    assert config.timeout == 42.0
    assert config.max_retries == 7
    with hook.get_client() as client:
        settings = client.settings
    assert settings.base_url == "http://127.0.0.1:8089"
    assert settings.anthropic_version == "2026-10-21"
    assert settings.betas == ("output-300k-2026-03-24", "message-batches-2024-09-24")
    assert settings.workspace_id == "wrkspc_01"
    assert settings.timeout == httpx.Timeout(42.0, connect=5.0)
    assert settings.retry.max_retries == 7


def test_uri_connection(conn: Any) -> None:
    # Airflow URIs spell the type with a dash; extras come as query strings.
    conn(
        "mb_uri",
        f"message-batches://:{API_KEY}@127.0.0.1:8089/http?"
        "anthropic_version=2026-10-21&betas=a-1%2C+b-2&workspace_id=wrkspc_9"
        "&default_model=claude-sonnet-4-5&timeout=12.5&max_retries=0",
    )
    config = MessageBatchesHook("mb_uri").config
    assert config.api_key.get_secret_value() == API_KEY
    assert config.base_url == "http://127.0.0.1:8089"
    assert config.anthropic_version == "2026-10-21"
    assert config.betas == ("a-1", "b-2")
    assert config.workspace_id == "wrkspc_9"
    assert config.default_model == "claude-sonnet-4-5"
    assert config.timeout == 12.5
    assert config.max_retries == 0


def test_uri_connection_with_a_scheme_in_the_host(conn: Any) -> None:
    conn("mb_uri2", f"message-batches://http://:{API_KEY}@emulator.local:8089")
    assert MessageBatchesHook("mb_uri2").config.base_url == "http://emulator.local:8089"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, DEFAULT_BASE_URL),
        ({"host": "api.example.test"}, "https://api.example.test"),
        ({"host": "api.example.test", "port": 8443}, "https://api.example.test:8443"),
        ({"host": "https://proxy.test/anthropic/"}, "https://proxy.test/anthropic"),
        ({"host": "http://proxy.test:9000", "port": 1234}, "http://proxy.test:9000"),
        ({"host": "http://[::1]", "port": 8089}, "http://[::1]:8089"),
        ({"host": "localhost", "schema": "http", "port": 8089}, "http://localhost:8089"),
    ],
)
def test_base_url(conn: Any, fields: dict[str, Any], expected: str) -> None:
    conn("mb_host", json_conn(**fields))
    assert MessageBatchesHook("mb_host").config.base_url == expected


def test_defaults(conn: Any) -> None:
    conn("mb_plain", json_conn())
    hook = MessageBatchesHook("mb_plain")
    assert hook.anthropic_version == "2023-06-01"
    assert hook.default_model is None
    with hook.get_client() as client:
        assert client.settings.betas == ()
        assert client.settings.workspace_id is None
        assert client.settings.retry == RetryPolicy()
        assert client.settings.timeout == httpx.Timeout(600.0, connect=5.0)


@pytest.mark.parametrize(
    ("betas", "expected"),
    [
        ("a,b", ("a", "b")),
        (" a , b ,", ("a", "b")),
        (["a", " b "], ("a", "b")),
        ("", ()),
        ([], ()),
        (None, ()),
    ],
)
def test_betas_as_list_or_comma_string(conn: Any, betas: Any, expected: tuple[str, ...]) -> None:
    conn("mb_betas", json_conn(extra={"betas": betas}))
    assert MessageBatchesHook("mb_betas").config.betas == expected


def test_results_origins_and_max_line_bytes_reach_the_client(conn: Any) -> None:
    extra = {"results_origins": "https://files.gw.test:9443, http://b.test", "max_line_bytes": "9"}
    conn("mb_trust", json_conn(host="https://gw.test/anthropic", extra=extra))
    hook = MessageBatchesHook("mb_trust")
    with hook.get_client() as client:
        settings = client.settings
    assert settings.results_origins == ("https://files.gw.test:9443", "http://b.test:80")
    assert settings.origin == "https://gw.test:443"
    assert settings.max_line_bytes == 9
    with hook.get_client(max_line_bytes=1 << 20) as client:
        assert client.settings.max_line_bytes == 1 << 20
    conn("mb_bad", json_conn(extra={"results_origins": ["https://gw.test/path"]}))
    with pytest.raises(
        ValueError, match=r"results_origins: 'https://gw\.test/path' is not an origin"
    ):
        MessageBatchesHook("mb_bad").get_client()


def test_extras_saved_by_the_ui_form_are_prefixed(conn: Any) -> None:
    conn(
        "mb_ui",
        json_conn(
            extra={
                "extra__message_batches__workspace_id": "wrkspc_ui",
                "extra__message_batches__betas": "x,y",
                "extra__message_batches__max_retries": "4",
                "extra__message_batches__timeout": "",
            }
        ),
    )
    config = MessageBatchesHook("mb_ui").config
    assert config.workspace_id == "wrkspc_ui"
    assert config.betas == ("x", "y")
    assert config.max_retries == 4
    assert config.timeout is None


@pytest.mark.parametrize(("name", "value"), [("timeout", "soon"), ("max_retries", "many")])
def test_bad_numbers_are_named(conn: Any, name: str, value: str) -> None:
    conn("mb_bad", json_conn(extra={name: value}))
    hook = MessageBatchesHook("mb_bad")
    with pytest.raises(ValueError, match=rf"'mb_bad'.*{name}.*{value}"):
        _ = hook.config
    ok, message = hook.test_connection()
    assert ok is False
    assert name in message


def test_missing_key(conn: Any) -> None:
    conn("mb_nokey", json.dumps({"conn_type": "message_batches", "host": "http://x"}))
    hook = MessageBatchesHook("mb_nokey")
    with pytest.raises(ValueError, match="no API key"):
        hook.get_client()
    ok, message = hook.test_connection()
    assert ok is False
    assert "password" in message


# --- clients built by the hook --------------------------------------------------------------


def test_the_hook_client_talks_through_the_given_transport(conn: Any) -> None:
    conn("mb_t", json_conn(host="http://emu.test", extra={"betas": "b1", "workspace_id": "w1"}))
    api = FakeAPI(reply(200, batch_json("msgbatch_h")))
    hook = MessageBatchesHook("mb_t", transport=api.transport)
    with hook.get_client() as client:
        assert isinstance(client, Client)
        assert client.retrieve("msgbatch_h").id == "msgbatch_h"
    request = api.last
    assert str(request.url) == "http://emu.test/v1/messages/batches/msgbatch_h"
    assert request.headers["x-api-key"] == API_KEY
    assert request.headers["anthropic-beta"] == "b1"
    assert request.headers["anthropic-workspace-id"] == "w1"


def test_get_conn_is_a_client(conn: Any) -> None:
    conn("mb_gc", json_conn())
    api = FakeAPI(reply(200, batch_json()))
    with MessageBatchesHook("mb_gc", transport=api.transport).get_conn() as client:
        client.retrieve("msgbatch_01")
    assert len(api.requests) == 1


def test_overrides_win(conn: Any) -> None:
    conn("mb_o", json_conn(extra={"max_retries": 5}))
    api = FakeAPI(default=error_reply(503))
    other = FakeAPI(reply(200, batch_json()))
    hook = MessageBatchesHook("mb_o", transport=api.transport)
    with (
        hook.get_client(max_retries=1, sleep=lambda s: None) as client,
        pytest.raises(ServiceUnavailableError),
    ):
        client.retrieve("msgbatch_01")
    assert len(api.requests) == 2
    with hook.get_client(transport=other.transport) as client:
        client.retrieve("msgbatch_01")
    assert len(other.requests) == 1


@pytest.mark.anyio
async def test_async_client(conn: Any) -> None:
    conn("mb_async", json_conn(host="http://emu.test", extra={"anthropic_version": "2026-10-21"}))
    api = FakeAPI(reply(200, batch_json("msgbatch_a")))
    hook = MessageBatchesHook("mb_async", async_transport=api.transport)
    client = await hook.get_async_client()
    async with client:
        assert isinstance(client, AsyncClient)
        assert (await client.retrieve("msgbatch_a")).id == "msgbatch_a"
    assert api.last.headers["anthropic-version"] == "2026-10-21"
    assert str(api.last.url) == "http://emu.test/v1/messages/batches/msgbatch_a"


@pytest.mark.anyio
async def test_async_client_without_a_key(conn: Any) -> None:
    conn("mb_async_nokey", json.dumps({"conn_type": "message_batches"}))
    with pytest.raises(ValueError, match="no API key"):
        await MessageBatchesHook("mb_async_nokey").get_async_client()


class _AsyncBlind(MessageBatchesHook):
    """A hook whose async lookup finds nothing, as that of a trigger `dags test` runs inline."""

    @classmethod
    async def aget_connection(cls, conn_id: str) -> Any:
        from airflow_batches._compat import AirflowNotFoundException

        raise AirflowNotFoundException(f"The conn_id `{conn_id}` isn't defined (async)")


@pytest.mark.anyio
async def test_the_sync_lookup_finds_what_the_async_one_does_not(conn: Any) -> None:
    conn("mb_sync_only", json_conn(host="http://emu.test"))
    config = await _AsyncBlind("mb_sync_only").aconfig()
    assert config.base_url == "http://emu.test"
    from airflow_batches._compat import AirflowNotFoundException

    # Missing everywhere: the async lookup's own error, as before.
    with pytest.raises(AirflowNotFoundException, match=r"isn't defined \(async\)"):
        await _AsyncBlind("mb_nowhere").aconfig()


# --- test_connection ------------------------------------------------------------------------


def test_test_connection_succeeds(conn: Any) -> None:
    conn("mb_ok", json_conn(host="http://emu.test"))
    api = FakeAPI(PAGE)
    ok, message = MessageBatchesHook("mb_ok", transport=api.transport).test_connection()
    assert (ok, message) == (True, "Connection successfully tested")
    (request,) = api.requests
    assert (request.method, request.url.path, request.url.query) == (
        "GET",
        "/v1/messages/batches",
        b"limit=1",
    )
    assert request.headers["x-api-key"] == API_KEY


def test_test_connection_reports_a_bad_key(conn: Any) -> None:
    conn("mb_401", json_conn(host="http://emu.test"))
    api = FakeAPI(error_reply(401, "authentication_error", "invalid x-api-key"))
    ok, message = MessageBatchesHook("mb_401", transport=api.transport).test_connection()
    assert ok is False
    assert "401 authentication_error" in message
    assert "invalid x-api-key" in message
    assert NEEDLE not in message


def test_test_connection_does_not_retry(conn: Any) -> None:
    # The UI button should answer at once, not after a minute of backoff.
    conn("mb_down", json_conn(host="http://emu.test", extra={"max_retries": 5}))
    api = FakeAPI(default=raise_(httpx.ConnectError, "refused"))
    ok, message = MessageBatchesHook("mb_down", transport=api.transport).test_connection()
    assert ok is False
    assert "refused" in message
    assert len(api.requests) == 1


def test_test_connection_on_an_unreachable_host(conn: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conn("mb_closed", json_conn(host=f"http://127.0.0.1:{port}"))
    ok, message = MessageBatchesHook("mb_closed").test_connection()
    assert ok is False
    assert "ConnectError" in message


# --- the key stays hidden -------------------------------------------------------------------


def test_no_key_in_reprs(conn: Any) -> None:
    conn("mb_repr", json_conn(extra={"workspace_id": "wrkspc_r"}))
    hook = MessageBatchesHook("mb_repr")
    texts = [
        repr(hook),
        str(hook),
        repr(hook.config),
        str(hook.config),
        repr(hook.config.client_kwargs()),
        repr(hook.config.api_key),
    ]
    with hook.get_client() as client:
        texts += [repr(client), str(client), repr(client.settings)]
    for text in texts:
        assert NEEDLE not in text
    assert "mb_repr" in repr(hook)


def test_no_key_in_logs(conn: Any, caplog: pytest.LogCaptureFixture) -> None:
    conn("mb_logs", json_conn(host="http://emu.test"))
    api = FakeAPI(
        error_reply(529, "overloaded_error"),
        error_reply(401, "authentication_error", "invalid x-api-key"),
        error_reply(401, "authentication_error", "invalid x-api-key"),
    )
    with debug_logging(caplog):
        hook = MessageBatchesHook("mb_logs", transport=api.transport)
        with (
            hook.get_client(sleep=lambda s: None) as client,
            pytest.raises(AuthenticationError) as caught,
        ):
            client.retrieve("msgbatch_01")
        hook.log.info("config is %s", hook.config)
        ok, message = hook.test_connection()
    assert ok is False
    assert len(api.requests) == 3
    assert {"httpx", "airflow_batches.api"} <= {r.name for r in caplog.records}
    assert NEEDLE not in caplog.text
    for text in (str(caught.value), repr(caught.value), message):
        assert NEEDLE not in text
    assert NEEDLE not in pickle.dumps(caught.value).decode("latin-1")


def test_ui_behaviour_matches_the_provider_info() -> None:
    (conn_type,) = get_provider_info()["connection-types"]
    declared = conn_type["ui-field-behaviour"]
    from_hook = MessageBatchesHook.get_ui_field_behaviour()
    assert from_hook["hidden_fields"] == declared["hidden-fields"]
    assert from_hook["relabeling"] == declared["relabeling"]
    for key, value in from_hook["placeholders"].items():
        assert declared["placeholders"][key] == value
    assert MessageBatchesHook.conn_type == conn_type["connection-type"]
    assert MessageBatchesHook.hook_name == conn_type["hook-name"]
