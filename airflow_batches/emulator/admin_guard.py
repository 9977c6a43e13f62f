"""Who may use the emulator: the developer's own tools, never a web page they happen to visit.

The emulator runs on the developer's machine, so any page open in their browser can send it
requests. :class:`HostGuard` checks every request, API and admin view alike:

* ``Host`` is a loopback name (``localhost``, ``127.0.0.0/8``, ``::1``), the address the
  request arrived on, this machine's own name (``socket.gethostname()``, and
  ``host.docker.internal``, the name containers give it), or one of ``allowed_hosts`` (or
  ``admin_hosts``, its older name). A page
  that rebinds its own DNS name to 127.0.0.1 (DNS rebinding, which makes it same-origin with
  the emulator, free to send the default API key in a header) still sends its own name here,
  and is refused.

The admin view needs no key, so :class:`AdminGuard` adds two more checks to its requests
(after :class:`HostGuard`'s):

* ``Origin``, when present, is this server's own origin. Browsers send it on every cross-origin
  script request and on every POST, so another site's page is refused; scripts, tests and
  ``curl`` send none, and neither does following a link (a batch page linked from Airflow's UI
  or a report still opens).
* A request that changes state (any method but GET and HEAD) says ``Content-Type:
  application/json``. A browser cannot send that to another origin without a CORS preflight,
  which the emulator never grants; a ``text/plain`` form or ``fetch`` (no preflight) is refused.

There is no admin token: these checks close the browser's way in, and whatever else can reach
loopback already runs on the machine (and can use the API with the emulator's keys).
"""

from __future__ import annotations

import functools
import ipaddress
import socket

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from airflow_batches.emulator.config import EmulatorConfig
from airflow_batches.emulator.errors import APIError, error_response, request_id_of

_SAFE_METHODS = frozenset({"GET", "HEAD"})


def _hostname(host: str) -> str:
    """``Host`` without its port, lower case, brackets and a trailing dot removed."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.partition(":")[0].rstrip(".")


def _same_address(name: str, address: str) -> bool:
    try:
        return ipaddress.ip_address(name) == ipaddress.ip_address(address)
    except ValueError:
        return name == address.lower()


@functools.cache
def machine_names() -> frozenset[str]:
    """This machine's own names: what a client on it, or in a container on it, may call it. A
    DNS-rebinding page sends its own domain, never one of these (no DNS lookup is made)."""
    names = {"host.docker.internal", socket.gethostname().strip().lower().rstrip(".")}
    return frozenset(n for n in names if n)


def extra_hosts(config: EmulatorConfig) -> list[str]:
    """The names let in besides loopback and the address served: ``allowed_hosts`` and
    ``admin_hosts``."""
    return [*config.allowed_hosts, *config.admin_hosts]


def host_allowed(host: str, served: str | None, extra: list[str]) -> bool:
    """Whether a request for ``host`` may reach the emulator.

    ``served`` is the address the request arrived on; ``extra`` is :func:`extra_hosts`.
    """
    name = _hostname(host)
    if name == "localhost" or name in machine_names():
        return True
    if name in (e.strip().lower().rstrip(".") for e in extra):
        return True
    if served is not None and _same_address(name, served):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_refusal(host: str | None, served: str | None, extra: list[str]) -> str | None:
    """Why a request for ``host`` is refused (a ``permission_error``), or None. A request
    without ``Host`` (HTTP/1.0) is let in: a browser always sends one."""
    if host is None or host_allowed(host, served, extra):
        return None
    return (
        f"Host {host[:100]!r} refused: the emulator answers only loopback names, the address "
        "it serves, this machine's name and allowed_hosts (a DNS-rebinding page sends its own "
        "name). Reaching it by another name (a docker-compose service)? Start it with "
        "--set 'allowed_hosts=[\"that-name\"]'"
    )


def check_admin_request(method: str, headers: Headers) -> APIError | None:
    """The refusal for an admin request that may come from a web page, or None. Its ``Host``
    has passed :class:`HostGuard` already (every route's)."""
    host = headers.get("host")
    origin = headers.get("origin")
    own = (host or "").strip().lower()
    if origin is not None and (
        not own or origin.strip().lower() not in (f"http://{own}", f"https://{own}")
    ):
        return APIError(
            "permission_error",
            f"Cross-site request refused: Origin {origin!r} is not this server's origin; the "
            "admin view answers scripts and tools, not other sites' pages",
        )
    if method not in _SAFE_METHODS:
        media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != "application/json":
            return APIError(
                "invalid_request_error",
                f"Content-Type {media_type or '(none)'!r} refused: a {method} to the admin view "
                "must send Content-Type: application/json (a JSON object, {} if nothing)",
                status=415,
            )
    return None


def _served(scope: Scope) -> str | None:
    server = scope.get("server")
    return str(server[0]) if server else None


class HostGuard:
    """ASGI middleware of the whole app: refuse a ``Host`` that is not the emulator's own, on
    every route, before anything else is read (a ``permission_error``, 403)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            config = scope["app"].state.emulator.config
            refusal = host_refusal(
                Headers(scope=scope).get("host"), _served(scope), extra_hosts(config)
            )
            if refusal is not None:
                response = error_response(
                    "permission_error", refusal, request_id=request_id_of(Request(scope))
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class AdminGuard:
    """ASGI middleware of the admin mount: refuse what a web page could send."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = check_admin_request(scope["method"], Headers(scope=scope))
            if refusal is not None:
                raise refusal
        await self.app(scope, receive, send)
