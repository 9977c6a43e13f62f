"""Fault injection: error answers, dropped or cut connections and slow answers, per endpoint.

Implemented as plain ASGI middleware because a dropped connection can only be produced below
the request/response abstraction: the answer starts, then stops half-way, and the server
closes the socket. What to inject is drawn by the emulator's ``faults.FaultInjector``; the
per-key rate limit is its ``faults.RateLimiter``.
"""

from __future__ import annotations

import asyncio
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from airflow_batches.emulator.config import Endpoint
from airflow_batches.emulator.errors import REQUEST_ID_KEY, error_response, new_request_id
from airflow_batches.emulator.faults import Fault
from airflow_batches.emulator.service import Emulator

_BATCH = re.compile(r"^/v1/messages/batches/(?P<id>[^/]+)(?P<tail>/cancel|/results)?/?$")


def endpoint_of(method: str, path: str) -> Endpoint | None:
    """Which API operation a request is, or None for anything else (the admin view)."""
    if path.rstrip("/") == "/v1/messages/batches":
        return {"POST": "create", "GET": "list"}.get(method)  # type: ignore[return-value]
    match = _BATCH.match(path)
    if match is None:
        return None
    tail = match.group("tail")
    if tail == "/cancel":
        return "cancel" if method == "POST" else None
    if tail == "/results":
        return "results" if method == "GET" else None
    return {"GET": "retrieve", "DELETE": "delete"}.get(method)  # type: ignore[return-value]


_ERRORS = {
    "429": ("rate_limit_error", "Number of requests has exceeded your rate limit (emulated)"),
    "500": ("api_error", "Internal server error (emulated)"),
    "529": ("overloaded_error", "Overloaded (emulated)"),
}


async def _drop(send: Send) -> None:
    # Promise a body, deliver part of it, return: the server closes the connection.
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"type":', "more_body": True})


def _cutting(send: Send, fraction: float) -> Send:
    """``send`` for the real answer, stopped once ``fraction`` of its body has gone out.

    What the app sends after that is swallowed; the answer is then short of its
    ``content-length`` and the server closes the connection: a cut mid-body.
    """
    allowed: int | None = None
    sent = 0

    async def cut_send(message: Message) -> None:
        nonlocal allowed, sent
        if message["type"] == "http.response.start":
            length = dict(message.get("headers") or []).get(b"content-length", b"")
            allowed = int(int(length) * fraction) if length.isdigit() else None
            await send(message)
            return
        if message["type"] != "http.response.body":
            await send(message)
            return
        body: bytes = message.get("body", b"")
        if allowed is None:  # no length announced: cut the first piece of body in two
            allowed = len(body) // 2
        if sent >= allowed:
            return
        piece = body[: allowed - sent]
        sent += len(piece)
        await send({"type": "http.response.body", "body": piece, "more_body": True})

    return cut_send


class FaultMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        emulator: Emulator = scope["app"].state.emulator
        await emulator.ensure_started()
        endpoint = endpoint_of(scope["method"], scope["path"])
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        emulator.count_call(endpoint)
        limit = emulator.config.requests_per_minute
        if limit:
            wait = emulator.limiter.take(_key_of(scope), limit)
            if wait is not None:
                await self._reject(scope, receive, send, "429", {"retry-after": f"{wait:.0f}"})
                return
        rates = emulator.config.faults_for(endpoint)
        fault = emulator.faults.decide(endpoint, rates)
        if fault is None or rates is None:
            await self.app(scope, receive, send)
        elif fault == "slow":
            await asyncio.sleep(rates.slow_seconds)
            await self.app(scope, receive, send)
        elif fault == "drop":
            await _drop(send)
        elif fault == "cut":
            await self.app(scope, receive, _cutting(send, rates.cut_fraction))
        elif fault == "drop_after":

            async def swallow(message: Message) -> None:
                return None

            await self.app(scope, receive, swallow)
            await _drop(send)
        else:
            headers = {}
            if fault in ("429", "529") and rates.retry_after:
                headers["retry-after"] = f"{rates.retry_after:g}"
            await self._reject(scope, receive, send, fault, headers)

    @staticmethod
    async def _reject(
        scope: Scope, receive: Receive, send: Send, fault: Fault, headers: dict[str, str]
    ) -> None:
        error_type, message = _ERRORS[fault]
        state = scope.setdefault("state", {})
        request_id = state.get(REQUEST_ID_KEY) or new_request_id()
        response = error_response(
            error_type, message, status=int(fault), request_id=request_id, headers=headers
        )
        await response(scope, receive, send)


def _key_of(scope: Scope) -> str:
    headers: dict[bytes, bytes] = dict(scope.get("headers") or [])
    key = headers.get(b"x-api-key")
    if key is None:
        key = headers.get(b"authorization", b"").partition(b" ")[2]
    return key.decode("latin-1")
