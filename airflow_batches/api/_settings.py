"""What a client is configured with, checked once: the key, the URL, headers, timeouts, retries.

``ClientOptions`` is the keyword set shared by ``Client`` and ``AsyncClient``;
``make_settings`` turns it into a frozen ``ClientSettings``, safe to print.
"""

from __future__ import annotations

import functools
import platform
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Required, TypedDict, Unpack

import httpx

from airflow_batches._version import __version__
from airflow_batches.api._retry import RetryPolicy

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_API_VERSION = "2023-06-01"
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=5.0)


class Secret:
    """A string that never shows itself: ``repr``, ``str`` and formatting print stars."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("an API key is not picklable: pass the connection id instead")


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context per process.

    Building one loads the CA bundle (tens of milliseconds): done once, not per client, so a
    triggerer starting many triggers never blocks its event loop on it.
    """
    return httpx.create_ssl_context(verify=True)


def _user_agent() -> str:
    return (
        f"airflow-batches/{__version__} httpx/{httpx.__version__} "
        f"python/{platform.python_version()}"
    )


@dataclass(frozen=True, repr=False)
class ClientSettings:
    """Everything a client needs besides its transport. Safe to print: the key is a Secret."""

    api_key: Secret
    base_url: str = DEFAULT_BASE_URL
    anthropic_version: str = DEFAULT_API_VERSION
    betas: tuple[str, ...] = ()
    workspace_id: str | None = None
    timeout: httpx.Timeout = field(default_factory=lambda: DEFAULT_TIMEOUT)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    user_agent: str = ""

    def __repr__(self) -> str:
        return (
            f"ClientSettings(base_url={self.base_url!r}, "
            f"anthropic_version={self.anthropic_version!r}, betas={self.betas!r}, "
            f"workspace_id={self.workspace_id!r}, api_key=**********)"
        )


class ClientOptions(TypedDict, total=False):
    """The keyword arguments ``Client`` and ``AsyncClient`` share (besides transport, sleep)."""

    api_key: Required[str | Secret]
    base_url: str | None
    anthropic_version: str | None
    betas: Sequence[str] | None
    workspace_id: str | None
    timeout: float | httpx.Timeout | None
    max_retries: int | None
    """Overrides ``retry.max_retries``."""
    retry: RetryPolicy | None


_OPTION_NAMES = ClientOptions.__required_keys__ | ClientOptions.__optional_keys__


def make_settings(**options: Unpack[ClientOptions]) -> ClientSettings:
    """Check the options and fill in the defaults; bad values fail here, before any call."""
    # Keyword arguments typed by a TypedDict are not checked at run time: do what a plain
    # signature would, so a misspelt option fails instead of being ignored.
    unknown = sorted(set(options) - _OPTION_NAMES)
    if unknown:
        raise TypeError(f"unexpected client option(s): {', '.join(unknown)}")
    if "api_key" not in options:
        raise TypeError("missing required keyword argument: 'api_key'")
    api_key = options["api_key"]
    key = api_key if isinstance(api_key, Secret) else Secret(api_key)
    if not key:
        raise ValueError("an API key is required")
    base_url = (options.get("base_url") or DEFAULT_BASE_URL).rstrip("/")
    if not base_url.startswith(("https://", "http://")):
        # Fail here, not as a "connection error" retried with backoff on the first call.
        raise ValueError(f"base_url must start with https:// or http://, got {base_url!r}")
    timeout = options.get("timeout")
    if isinstance(timeout, int | float):
        timeout = httpx.Timeout(float(timeout), connect=min(5.0, float(timeout)))
    policy = options.get("retry") or RetryPolicy()
    max_retries = options.get("max_retries")
    if max_retries is not None:
        policy = RetryPolicy(
            max_retries=max_retries,
            initial_delay=policy.initial_delay,
            max_delay=policy.max_delay,
            jitter=policy.jitter,
            max_retry_after=policy.max_retry_after,
        )
    return ClientSettings(
        api_key=key,
        base_url=base_url,
        anthropic_version=options.get("anthropic_version") or DEFAULT_API_VERSION,
        betas=tuple(b.strip() for b in options.get("betas") or () if b.strip()),
        workspace_id=options.get("workspace_id") or None,
        timeout=timeout or DEFAULT_TIMEOUT,
        retry=policy,
        user_agent=_user_agent(),
    )
