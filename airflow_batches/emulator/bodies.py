"""Request bodies, read under a byte bound: past it a 413 ``request_too_large``, nothing more.

Every handler that reads a body reads it through here (a test keeps it so), each with its
bound: a create body ``max_body_bytes`` (the API's 256 MB), a ``count_tokens`` body the
Messages API's 32 MB, an admin body 1 MiB.

A declared ``Content-Length`` over the bound is refused before a byte is read. A body sent
without one (chunked) is counted as it arrives and refused as soon as it passes the bound, so
the app holds at most one chunk more than the bound (or, for a create, writes no more than the
bound to disk). The app never reads the rest: the HTTP server discards it as it arrives, so a
client that finishes sending its body still reads the 413 rather than a broken connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request

from airflow_batches.emulator.errors import APIError

MESSAGE_MAX_BODY_BYTES = 32 * 1024 * 1024
"""One Messages request (``count_tokens``): the Messages API's 32 MB request limit."""
ADMIN_MAX_BODY_BYTES = 1024 * 1024
"""One admin request (a config change, a clock advance): far above any real one."""


def too_large(limit: int, name: str, sent: int | None = None) -> APIError:
    """The 413 for a body over ``limit``; ``sent`` is its declared length, when known."""
    size = (
        f"{sent} > {limit}"
        if sent is not None
        else f"more than {limit}, sent without Content-Length (the rest was not read)"
    )
    return APIError(
        "request_too_large",
        f"Request exceeds the maximum allowed number of bytes: {size} ({name})",
    )


def _declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    # The HTTP server has already refused a malformed length; be lenient all the same.
    return int(value) if value is not None and value.strip().isdigit() else None


async def stream_body(request: Request, limit: int, name: str) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive; ``APIError`` 413 once it is over ``limit`` bytes.

    ``name`` says which limit it is in the error (``max_body_bytes``, ...).
    """
    declared = _declared_length(request)
    if declared is not None and declared > limit:
        raise too_large(limit, name, declared)
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise too_large(limit, name, None if declared is None else total)
        if chunk:
            yield chunk


async def read_body(request: Request, limit: int, name: str) -> bytes:
    """The whole body, at most ``limit`` bytes of it (413 past that)."""
    return b"".join([chunk async for chunk in stream_body(request, limit, name)])
