"""Who may use the admin view: the developer's own tools, never a web page they happen to visit.

The admin view needs no key and the emulator runs on the developer's machine, so any page open
in their browser can send it requests. Every admin request passes three checks first:

* ``Host`` is a loopback name (``localhost``, ``127.0.0.0/8``, ``::1``), the address the
  request arrived on, or one of ``admin_hosts``. A page that rebinds its own DNS name to
  127.0.0.1 (DNS rebinding, which makes it same-origin with the emulator) still sends its own
  name here, and is refused.
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

import ipaddress

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from airflow_batches.emulator.errors import APIError

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


def host_allowed(host: str, served: str | None, extra: list[str]) -> bool:
    """Whether a request for ``host`` may reach the admin view.

    ``served`` is the address the request arrived on; ``extra`` is ``admin_hosts``.
    """
    name = _hostname(host)
    if name == "localhost" or name in (e.strip().lower().rstrip(".") for e in extra):
        return True
    if served is not None and _same_address(name, served):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_admin_request(
    method: str, headers: Headers, served: str | None, extra: list[str]
) -> APIError | None:
    """The refusal for an admin request that may come from a web page, or None."""
    host = headers.get("host")
    if host is not None and not host_allowed(host, served, extra):
        return APIError(
            "permission_error",
            f"Host {host!r} refused: the admin view answers only loopback names, the address "
            "it serves and admin_hosts (a DNS-rebinding page sends its own name)",
        )
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


class AdminGuard:
    """ASGI middleware of the admin mount: refuse what a web page could send."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            server = scope.get("server")
            extra = scope["app"].state.emulator.config.admin_hosts
            refusal = check_admin_request(
                scope["method"], Headers(scope=scope), server[0] if server else None, extra
            )
            if refusal is not None:
                raise refusal
        await self.app(scope, receive, send)
