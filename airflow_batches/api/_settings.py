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
DEFAULT_MAX_LINE_BYTES = 64 * 1024 * 1024
"""The longest results line a client reads (64 MiB). Real lines stay far below it: the
``output-300k-2026-03-24`` beta's answers run to a few MB. It bounds what one line of a
results body can occupy, however well the body compresses."""
_DEFAULT_PORTS = {"http": 80, "https": 443}


def url_origin(url: str | httpx.URL) -> str | None:
    """``scheme://host:port`` of an absolute http(s) URL, the port always written and the
    host in its ASCII form; None for anything else (a relative URL, another scheme)."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except httpx.InvalidURL:
        return None
    scheme = parsed.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parsed.raw_host:
        return None
    host = parsed.raw_host.decode("ascii").lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{parsed.port or _DEFAULT_PORTS[scheme]}"


def _origins(values: Sequence[str] | str | None) -> tuple[str, ...]:
    if isinstance(values, str):
        values = values.split(",")
    out = []
    for value in values or ():
        text = str(value).strip()
        if not text:
            continue
        origin = url_origin(text)
        path = httpx.URL(text).path if origin else ""
        if origin is None or path not in ("", "/"):
            raise ValueError(
                f"results_origins: {text!r} is not an origin: write scheme://host[:port] "
                "(http or https, no path)"
            )
        out.append(origin)
    return tuple(dict.fromkeys(out))


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
    results_origins: tuple[str, ...] = ()
    """Origins besides the API's own that a ``results_url`` may name (a gateway's)."""
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    """The longest results line read; a longer one fails the download."""

    def __repr__(self) -> str:
        return (
            f"ClientSettings(base_url={self.base_url!r}, "
            f"anthropic_version={self.anthropic_version!r}, betas={self.betas!r}, "
            f"workspace_id={self.workspace_id!r}, api_key=**********)"
        )

    @property
    def origin(self) -> str:
        """The API's origin: the only one the key goes to, with ``results_origins``."""
        origin = url_origin(self.base_url)
        assert origin is not None  # make_settings checked it
        return origin

    @property
    def trusted_origins(self) -> frozenset[str]:
        return frozenset((self.origin, *self.results_origins))


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
    results_origins: Sequence[str] | str | None
    """Origins (``https://gateway.example:8443``) a ``results_url`` may name besides the
    API's own; a list, or a comma-separated string."""
    max_line_bytes: int | None
    """The longest results line read (default ``DEFAULT_MAX_LINE_BYTES``, 64 MiB)."""


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
    if not base_url.startswith(("https://", "http://")) or url_origin(base_url) is None:
        # Fail here, not as a "connection error" retried with backoff on the first call.
        raise ValueError(f"base_url must start with https:// or http://, got {base_url!r}")
    max_line_bytes = options.get("max_line_bytes")
    if max_line_bytes is None:
        max_line_bytes = DEFAULT_MAX_LINE_BYTES
    elif max_line_bytes < 1:
        raise ValueError(f"max_line_bytes must be >= 1, got {max_line_bytes}")
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
        results_origins=_origins(options.get("results_origins")),
        max_line_bytes=max_line_bytes,
    )
