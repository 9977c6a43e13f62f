"""One HTTP error type, rendered as the API's error JSON by a single exception handler."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from email.utils import formatdate

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from airflow_batches.api._models import ErrorBody, ErrorDetail

STATUS_OF_TYPE: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "conflict_error": 409,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

_TYPE_OF_STATUS = {status: type_ for type_, status in STATUS_OF_TYPE.items()}

REQUEST_ID_KEY = "request_id"


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


class APIError(Exception):
    """An error answer: the status follows from the error type."""

    def __init__(
        self,
        error_type: str,
        message: str,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.status = status or STATUS_OF_TYPE.get(error_type, 500)
        self.headers = dict(headers or {})


def invalid_request(message: str) -> APIError:
    return APIError("invalid_request_error", message)


def not_found(message: str) -> APIError:
    return APIError("not_found_error", message)


def error_payload(error_type: str, message: str, request_id: str | None) -> bytes:
    body = ErrorBody(error=ErrorDetail(type=error_type, message=message), request_id=request_id)
    return body.model_dump_json().encode()


def error_response(
    error_type: str,
    message: str,
    *,
    status: int | None = None,
    request_id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    request_id = request_id or new_request_id()
    all_headers = {"request-id": request_id, **(headers or {})}
    return Response(
        error_payload(error_type, message, request_id),
        status_code=status or STATUS_OF_TYPE.get(error_type, 500),
        headers=all_headers,
        media_type="application/json",
    )


def request_id_of(request: Request) -> str:
    state = request.scope.setdefault("state", {})
    rid = state.get(REQUEST_ID_KEY)
    if not isinstance(rid, str):
        rid = state[REQUEST_ID_KEY] = new_request_id()
    return rid


async def handle_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return error_response(
        exc.error_type,
        exc.message,
        status=exc.status,
        request_id=request_id_of(request),
        headers=exc.headers,
    )


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (unknown path, wrong method) in the API's shape."""
    assert isinstance(exc, HTTPException)
    error_type = _TYPE_OF_STATUS.get(exc.status_code, "invalid_request_error")
    message = exc.detail if exc.status_code != 404 else f"Not found: {request.url.path}"
    return error_response(
        error_type,
        message,
        status=exc.status_code,
        request_id=request_id_of(request),
        headers=exc.headers,
    )


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    # Outside the request-id middleware: this answer carries its own header.
    return error_response(
        "api_error", "Internal server error", status=500, request_id=request_id_of(request)
    )


def json_response(payload: bytes | str, status: int = 200) -> Response:
    return Response(payload, status_code=status, media_type="application/json")


class RequestIdMiddleware:
    """Give every answer a ``request-id`` header (the error bodies carry the same id) and,
    given the emulator's clock, a ``Date`` of that clock (batch times are on it too)."""

    def __init__(self, app: ASGIApp, clock: Callable[[], float] | None = None) -> None:
        self.app = app
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})[REQUEST_ID_KEY] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"request-id" for name, _ in headers):
                    headers.append((b"request-id", request_id.encode()))
                if self.clock is not None:
                    headers.append((b"date", formatdate(self.clock(), usegmt=True).encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)
