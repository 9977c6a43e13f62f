"""The request envelope's ``metadata``: data of the user's own that travels to the results.

A request may carry, beside ``custom_id`` and ``params``, a ``metadata`` member: any JSON
value (an object is the usual: the expected answer, a category, the source row)::

    {"custom_id": "q1", "params": {...}, "metadata": {"expected": "4", "category": "math"}}

It is never sent to the API. It is peeled off before pre-flight (which stays strict: any other
unknown member is still refused), written to the job's *sidecar* on shared storage beside the
staged requests, and joined back onto that request's result line when the results are
published (``"metadata": ...`` beside ``custom_id`` and ``result``). Follow-up batches keep it:
they resend the same custom_ids, and the join is by custom_id. Not to be confused with
``params.metadata`` (the API's own ``{"user_id": ...}``), which is sent as it is.

The sidecar (``sidecar.jsonl``) has one line per request that carries something to join: its
metadata, and for a model-matrix job whose custom_id had to be shortened, the original
custom_id (``_matrix``). At publish time it is loaded into a :class:`~._index.DiskIndex`, so
memory does not grow with the number of requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

import msgspec

from airflow_batches.jobs._index import DiskIndex
from airflow_batches.jobs._prepare import RequestValidationError
from airflow_batches.jobs._store import StoragePath

__all__ = [
    "METADATA_KEY",
    "SIDECAR_FILE",
    "Joined",
    "Sidecar",
    "load_sidecar",
    "split_metadata",
]

METADATA_KEY = "metadata"
SIDECAR_FILE = "sidecar.jsonl"
_NEEDLE = b'"metadata"'
_encode = msgspec.json.Encoder().encode


class _Entry(msgspec.Struct, omit_defaults=True):
    id: str
    """The request's key in the job: its custom_id, or for a matrix job the part after the
    model prefix (the same for every model)."""
    custom_id: str | None = None
    """The custom_id as the user wrote it, when ``id`` is a shortened form of it."""
    metadata: msgspec.Raw = msgspec.Raw(b"")
    """The metadata's JSON, or empty when the request had none."""


_decode_entry = msgspec.json.Decoder(_Entry).decode
_encode_entry = msgspec.json.Encoder().encode


def split_metadata(raw: Any) -> tuple[Any, bytes | None]:
    """``(the request without its metadata, the metadata as JSON bytes)``, or ``(raw, None)``.

    A JSONL line (bytes) is decoded only when it mentions ``"metadata"``; without a top-level
    ``metadata`` it is handed on unchanged. A line that is not valid JSON is handed on as it
    is, for pre-flight to name what is wrong with it.
    """
    if isinstance(raw, bytes | bytearray | memoryview):
        data = bytes(raw)
        if _NEEDLE not in data:
            return raw, None
        try:
            value = msgspec.json.decode(data)
        except msgspec.DecodeError:
            return raw, None
        if not isinstance(value, dict) or METADATA_KEY not in value:
            return raw, None
        meta = value.pop(METADATA_KEY)
        return value, _encode(meta)
    if isinstance(raw, Mapping) and METADATA_KEY in raw:
        rest = {k: v for k, v in raw.items() if k != METADATA_KEY}
        try:
            return rest, _encode(raw[METADATA_KEY])
        except (TypeError, ValueError, msgspec.EncodeError) as exc:
            raise MetadataError(f"metadata: not JSON-serialisable: {exc}") from None
    return raw, None


class MetadataError(ValueError):
    """A request's metadata cannot be kept (it is not JSON)."""


def checked_split(location: str, raw: Any) -> tuple[Any, bytes | None]:
    """:func:`split_metadata`, its error a pre-flight error naming the request."""
    try:
        return split_metadata(raw)
    except MetadataError as exc:
        custom_id = raw.get("custom_id") if isinstance(raw, Mapping) else None
        who = f"{location} (custom_id {custom_id!r})" if isinstance(custom_id, str) else location
        raise RequestValidationError(
            f"1 invalid request; nothing was submitted:\n  {who}: {exc}",
            problems=[
                {
                    "location": location,
                    "custom_id": custom_id,
                    "field": METADATA_KEY,
                    "message": str(exc),
                }
            ],
            total=1,
        ) from None


class Sidecar:
    """Writes the sidecar while pre-flight reads the input (see the module docstring).

    ``attach`` gives it the stream to write to (the staging step opens it); entries added
    while no stream is attached are dropped, which is how only one of a matrix job's passes
    over the input writes them.
    """

    name = SIDECAR_FILE

    def __init__(self) -> None:
        self._stream: IO[bytes] | None = None
        self.count = 0
        self.with_metadata = 0

    def attach(self, stream: IO[bytes] | None) -> None:
        """Write to ``stream`` from now on (counting afresh), or to nothing (None)."""
        if stream is not None:
            self.count = self.with_metadata = 0
        self._stream = stream

    def add(self, key: str, *, custom_id: str | None = None, metadata: bytes | None) -> None:
        if custom_id == key:
            custom_id = None
        if self._stream is None or (metadata is None and custom_id is None):
            return
        entry = _Entry(
            id=key,
            custom_id=custom_id,
            metadata=msgspec.Raw(metadata if metadata is not None else b""),
        )
        self._stream.write(_encode_entry(entry) + b"\n")
        self.count += 1
        self.with_metadata += metadata is not None


class Joined(msgspec.Struct, frozen=True):
    """What the sidecar knows of one request."""

    custom_id: str | None
    """The original custom_id when the job's key for it was shortened, else None."""
    metadata: bytes | None


def load_sidecar(path: StoragePath, index: DiskIndex) -> int:
    """Stream the sidecar at ``path`` into ``index`` (key -> packed :class:`Joined`)."""
    count = 0
    with path.open("rb") as stream:
        for line in stream:
            if not line.strip():
                continue
            entry = _decode_entry(line)
            meta = bytes(entry.metadata) or None
            index.put(entry.id, _pack(entry.custom_id, meta))
            count += 1
    return count


def _pack(custom_id: str | None, metadata: bytes | None) -> bytes:
    head = (custom_id or "").encode()
    return len(head).to_bytes(1, "big") + head + (metadata if metadata is not None else b"")


def unpack(value: bytes | None) -> Joined:
    if value is None:
        return Joined(None, None)
    size = value[0]
    custom_id = value[1 : 1 + size].decode() or None
    rest = value[1 + size :]
    return Joined(custom_id, rest or None)
