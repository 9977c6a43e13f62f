"""The Airflow hook: turns a connection into Message Batches clients."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cached_property
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
from asgiref.sync import sync_to_async

from airflow_batches._compat import AirflowNotFoundException, BaseHook, Connection
from airflow_batches.api import (
    DEFAULT_API_VERSION,
    DEFAULT_BASE_URL,
    AsyncClient,
    BatchesError,
    Client,
    Secret,
)

CONN_TYPE = "message_batches"


class ConnectionConfigError(BatchesError, ValueError):
    """A connection that cannot work as it is (no key, bad extras): fix the connection."""


_N = TypeVar("_N", int, float)


class ConnectionConfig:
    """What a Message Batches connection says, parsed once; the key is kept as a Secret."""

    __slots__ = (
        "anthropic_version",
        "api_key",
        "base_url",
        "betas",
        "default_model",
        "max_line_bytes",
        "max_retries",
        "results_origins",
        "timeout",
        "workspace_id",
    )

    def __init__(self, conn: Connection) -> None:
        extra = _extras(conn)
        self.api_key = Secret(conn.password or extra.get("api_key") or "")
        self.base_url = _base_url(conn) or DEFAULT_BASE_URL
        self.anthropic_version = str(extra.get("anthropic_version") or DEFAULT_API_VERSION)
        self.betas = _words(extra.get("betas"))
        self.workspace_id = _opt_str(extra.get("workspace_id"))
        self.default_model = _opt_str(extra.get("default_model"))
        self.timeout = _number(conn, extra, "timeout", float)
        self.max_retries = _number(conn, extra, "max_retries", int)
        self.max_line_bytes = _number(conn, extra, "max_line_bytes", int)
        self.results_origins = _words(extra.get("results_origins"))

    def __repr__(self) -> str:
        return (
            f"ConnectionConfig(base_url={self.base_url!r}, "
            f"anthropic_version={self.anthropic_version!r}, api_key=**********)"
        )

    def client_kwargs(self) -> dict[str, Any]:
        return {
            "api_key": self.api_key,
            "base_url": self.base_url,
            "anthropic_version": self.anthropic_version,
            "betas": self.betas,
            "workspace_id": self.workspace_id,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "max_line_bytes": self.max_line_bytes,
            "results_origins": self.results_origins,
        }


def _extras(conn: Connection) -> dict[str, Any]:
    raw = conn.extra
    if not raw:
        return {}
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConnectionConfigError(
            f"connection {conn.conn_id!r}: extra is not valid JSON ({exc})"
        ) from None
    if not isinstance(value, dict):
        raise ConnectionConfigError(f"connection {conn.conn_id!r}: extra must be a JSON object")
    # The UI stores form fields with a prefix; accept both spellings.
    prefix = f"extra__{CONN_TYPE}__"
    return {k.removeprefix(prefix): v for k, v in value.items()}


def _base_url(conn: Connection) -> str | None:
    """Host as a URL: ``https://`` unless the host or the schema field names a scheme."""
    host = (conn.host or "").strip().rstrip("/")
    if not host:
        return None
    if "://" not in host:
        host = f"{conn.schema or 'https'}://{host}"
    if conn.port:
        parts = urlsplit(host)
        if parts.port is None:
            host = urlunsplit(parts._replace(netloc=f"{parts.netloc}:{conn.port}"))
    return host.rstrip("/")


def _words(value: Any) -> tuple[str, ...]:
    """A list extra given as a list, or as one comma-separated string."""
    if not value:
        return ()
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return tuple(str(part).strip() for part in value if str(part).strip())


def _opt_str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _number(conn: Connection, extra: Mapping[str, Any], name: str, kind: type[_N]) -> _N | None:
    value = extra.get(name)
    if value in (None, ""):
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ConnectionConfigError(
            f"connection {conn.conn_id!r}: extra {name} must be {kind.__name__}, got {value!r}"
        ) from None


class MessageBatchesHook(BaseHook):
    """Interact with the Message Batches API through an Airflow connection.

    The connection's password is the API key; host is the base URL (default
    ``https://api.anthropic.com``); extras: ``anthropic_version``, ``betas`` (list or comma
    separated), ``workspace_id``, ``default_model``, ``timeout`` (seconds), ``max_retries``,
    ``results_origins`` (origins besides the API's that a batch's ``results_url`` may name:
    the key is sent nowhere else) and ``max_line_bytes`` (the longest results line read).

    :param conn_id: the connection id.
    :param transport: the httpx transport of every sync client this hook builds (a proxy, a
        custom TLS set-up, or ``httpx.MockTransport`` in tests); default: httpx's own.
    :param async_transport: the same for async clients (``httpx.ASGITransport`` serves the
        emulator in-process).
    """

    conn_name_attr = "conn_id"
    default_conn_name = "message_batches_default"
    conn_type = CONN_TYPE
    hook_name = "Message Batches"

    def __init__(
        self,
        conn_id: str = default_conn_name,
        *,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.transport = transport
        self.async_transport = async_transport

    def __repr__(self) -> str:
        return f"MessageBatchesHook(conn_id={self.conn_id!r})"

    @cached_property
    def config(self) -> ConnectionConfig:
        return ConnectionConfig(self.get_connection(self.conn_id))

    async def aconfig(self) -> ConnectionConfig:
        """The connection, read without blocking the event loop (for triggers).

        The async lookup first; if it finds nothing, the sync one in a thread (off the event
        loop). The async lookup of a trigger that ``airflow dags test`` (``dag.test()``) runs
        inline does not reach the metadata database (its in-process channel has no async
        send, so the lookup falls through to "isn't defined"), while the sync one does:
        without the fallback a connection made with ``airflow connections add`` works for
        every task but not for a deferred wait under ``dags test``. On a triggerer both
        lookups see the same places, and a connection that is truly missing fails as before.
        """
        if "config" not in self.__dict__:
            try:
                conn = await self.aget_connection(self.conn_id)
            except AirflowNotFoundException as not_found:
                try:
                    # asgiref's thread, as Airflow wraps its own sync lookups: on a 3.1
                    # triggerer the sync channel reaches the loop through it.
                    conn = await sync_to_async(self.get_connection)(self.conn_id)
                except AirflowNotFoundException:
                    raise not_found from None
            self.__dict__["config"] = ConnectionConfig(conn)
        return self.config

    def _check_key(self, config: ConnectionConfig) -> None:
        if not config.api_key:
            raise ConnectionConfigError(
                f"connection {self.conn_id!r} has no API key: put it in the password field"
            )

    def get_conn(self) -> Client:
        """A new sync client; close it (or use it in a ``with``)."""
        return self.get_client()

    def get_client(self, **overrides: Any) -> Client:
        """A new sync client; ``overrides`` replace any ``Client`` argument."""
        self._check_key(self.config)
        kwargs = self.config.client_kwargs()
        if self.transport is not None:
            kwargs["transport"] = self.transport
        return Client(**{**kwargs, **overrides})

    async def get_async_client(self, **overrides: Any) -> AsyncClient:
        """A new async client, the connection read without blocking the event loop."""
        config = await self.aconfig()
        self._check_key(config)
        kwargs = config.client_kwargs()
        if self.async_transport is not None:
            kwargs["transport"] = self.async_transport
        return AsyncClient(**{**kwargs, **overrides})

    @property
    def default_model(self) -> str | None:
        return self.config.default_model

    @property
    def anthropic_version(self) -> str:
        return self.config.anthropic_version

    def test_connection(self) -> tuple[bool, str]:
        """Check the key and URL with the cheapest call there is: list one batch."""
        try:
            with self.get_client(max_retries=0) as client:
                client.list_page(limit=1)
        except (BatchesError, ValueError) as exc:
            return False, str(exc)
        return True, "Connection successfully tested"

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema", "port", "login", "extra"],
            "relabeling": {"host": "Base URL", "password": "API key"},
            "placeholders": {
                "host": DEFAULT_BASE_URL,
                "password": "sk-ant-...",
            },
        }
