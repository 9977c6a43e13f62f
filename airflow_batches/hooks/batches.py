"""The Airflow hook: turns a connection into Message Batches clients."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.definitions.connection import Connection

from airflow_batches.api import (
    DEFAULT_API_VERSION,
    DEFAULT_BASE_URL,
    AsyncClient,
    BatchesError,
    Client,
    Secret,
)

CONN_TYPE = "message_batches"


class ConnectionConfig:
    """What a Message Batches connection says, parsed once; the key is kept as a Secret."""

    __slots__ = (
        "anthropic_version",
        "api_key",
        "base_url",
        "betas",
        "default_model",
        "max_retries",
        "timeout",
        "workspace_id",
    )

    def __init__(self, conn: Connection) -> None:
        extra = _extras(conn)
        self.api_key = Secret(conn.password or extra.get("api_key") or "")
        self.base_url = _base_url(conn) or DEFAULT_BASE_URL
        self.anthropic_version = str(extra.get("anthropic_version") or DEFAULT_API_VERSION)
        self.betas = _betas(extra.get("betas"))
        self.workspace_id = _opt_str(extra.get("workspace_id"))
        self.default_model = _opt_str(extra.get("default_model"))
        self.timeout = float(extra["timeout"]) if extra.get("timeout") not in (None, "") else None
        retries = extra.get("max_retries")
        self.max_retries = int(retries) if retries not in (None, "") else None

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
        raise ValueError(f"connection {conn.conn_id!r}: extra is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"connection {conn.conn_id!r}: extra must be a JSON object")
    # The UI stores form fields with a prefix; accept both spellings.
    prefix = f"extra__{CONN_TYPE}__"
    return {k.removeprefix(prefix): v for k, v in value.items()}


def _base_url(conn: Connection) -> str | None:
    host = (conn.host or "").strip()
    if not host:
        return None
    if "://" not in host:
        scheme = conn.schema or "https"
        host = f"{scheme}://{host}"
    if conn.port and host.count(":") < 2:
        host = f"{host.rstrip('/')}:{conn.port}"
    return host.rstrip("/")


def _betas(value: Any) -> tuple[str, ...]:
    if not value:
        return ()
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return tuple(str(part).strip() for part in value if str(part).strip())


def _opt_str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


class MessageBatchesHook(BaseHook):
    """Interact with the Message Batches API through an Airflow connection.

    The connection's password is the API key; host is the base URL (default
    ``https://api.anthropic.com``); extras: ``anthropic_version``, ``betas`` (list or comma
    separated), ``workspace_id``, ``default_model``, ``timeout`` (seconds), ``max_retries``.

    :param conn_id: the connection id.
    """

    conn_name_attr = "conn_id"
    default_conn_name = "message_batches_default"
    conn_type = CONN_TYPE
    hook_name = "Message Batches"

    def __init__(self, conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id

    def __repr__(self) -> str:
        return f"MessageBatchesHook(conn_id={self.conn_id!r})"

    @cached_property
    def config(self) -> ConnectionConfig:
        return ConnectionConfig(self.get_connection(self.conn_id))

    async def aconfig(self) -> ConnectionConfig:
        """The connection, read without blocking the event loop (for triggers)."""
        if "config" not in self.__dict__:
            self.__dict__["config"] = ConnectionConfig(await self.aget_connection(self.conn_id))
        return self.config

    def _check_key(self, config: ConnectionConfig) -> None:
        if not config.api_key:
            raise ValueError(
                f"connection {self.conn_id!r} has no API key: put it in the password field"
            )

    def get_conn(self) -> Client:
        """A new sync client; close it (or use it in a ``with``)."""
        self._check_key(self.config)
        return Client(**self.config.client_kwargs())

    def get_client(self, **overrides: Any) -> Client:
        self._check_key(self.config)
        return Client(**{**self.config.client_kwargs(), **overrides})

    async def get_async_client(self, **overrides: Any) -> AsyncClient:
        config = await self.aconfig()
        self._check_key(config)
        return AsyncClient(**{**config.client_kwargs(), **overrides})

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
