"""The create body, byte for byte: one encoder for ``Client.create`` and a job's shard bodies.

A create body is ``{"requests":[`` + request objects joined by ``,`` + ``]}``. Each request is
encoded once, compactly and without ASCII escaping, exactly as it will be sent; its size is
then known before anything is sent, which is what sharding by bytes needs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from airflow_batches.api._models import BatchRequest

ENVELOPE_HEAD = b'{"requests":['
ENVELOPE_TAIL = b"]}"
ENVELOPE_BYTES = len(ENVELOPE_HEAD) + len(ENVELOPE_TAIL)
"""Bytes a create body adds around its request objects."""
SEPARATOR = b","
"""Between two request objects of a create body."""


def dump_request(payload: Mapping[str, Any]) -> bytes:
    """Encode one already-checked ``{"custom_id", "params"}`` object as it is sent.

    Raises ``TypeError`` or ``ValueError`` for what JSON cannot hold (NaN, infinities,
    objects that are not JSON types).
    """
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def dump_member(key: str, value: Any) -> bytes:
    """``"key":value`` as it is sent: one member of a request's params, for splicing."""
    return dump_request({key: value})[1:-1]


def splice_params(custom_id: bytes, params: bytes, members: Iterable[bytes]) -> bytes:
    """A request line whose params are ``members`` followed by those of ``params``.

    ``custom_id`` and ``params`` are already-encoded JSON (a string and an object, as the user
    wrote them: their bytes are kept); ``members`` come from ``dump_member``. This is how
    defaults join a request without re-encoding what the request holds.
    """
    head = b",".join(members)
    rest = params[1:]
    if head and rest.strip(b" \t\r\n") != b"}":
        head += b","
    return b'{"custom_id":' + custom_id + b',"params":{' + head + rest + b"}"


def encode_request_line(request: BatchRequest | Mapping[str, Any]) -> bytes:
    """Validate one request and encode it exactly as it will be sent."""
    if isinstance(request, BatchRequest):
        return dump_request(request.model_dump(mode="json", exclude_unset=True))
    BatchRequest.model_validate(request)
    return dump_request(request)


def iter_create_body(lines: Iterable[bytes]) -> Iterator[bytes]:
    """Wrap already-encoded request objects into ``{"requests":[...]}``, one piece at a time."""
    return frame_body(_joined(lines))


def frame_body(joined: Iterable[bytes]) -> Iterator[bytes]:
    """The create body around request objects already joined by ``SEPARATOR`` (pieces of any
    size: a job streams its staged requests in blocks), one piece at a time."""
    yield ENVELOPE_HEAD
    yield from joined
    yield ENVELOPE_TAIL


def _joined(lines: Iterable[bytes]) -> Iterator[bytes]:
    first = True
    for line in lines:
        if not first:
            yield SEPARATOR
        first = False
        yield line
