"""The request envelope's ``metadata``: data of the user's own that travels to the results.

A request may carry, beside ``custom_id`` and ``params``, a ``metadata`` member: any JSON
value (an object is the usual: the expected answer, a category, the source row)::

    {"custom_id": "q1", "params": {...}, "metadata": {"expected": "4", "category": "math"}}

It is never sent to the API. Pre-flight (``_validate.RequestValidator(metadata=...)``) accepts
it, checks it is JSON, leaves it out of the line it stages (the user's bytes for the rest),
and hands it to the job's :class:`Sidecar` once the request has passed; pre-flight stays
strict about every other member. The sidecar is written beside the staged requests on shared
storage, and at publish time each request's metadata is joined back onto its result line
(``"metadata": ...`` beside ``custom_id`` and ``result``). Follow-up and replacement batches
keep it: they resend the same custom_ids, and the join is by custom_id. Not to be confused
with ``params.metadata`` (the API's own ``{"user_id": ...}``), which is sent as it is.

``sidecar.jsonl`` lines: ``{"id": custom_id, "metadata": ...}``, and for a model-matrix job
whose custom_ids had to be shortened (``_matrix``), ``{"key": request key, "custom_id":
original}``. The metadata entries are in the order of the staged requests: a matrix job's
model by model (:meth:`Sidecar.hold_back`), as its batches are, so the fetch reads the sidecar
alongside the results (``jobs._lookahead``); what waits too long there goes to a ``DiskIndex``
(``jobs._index``), so memory does not grow with the number of requests.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import IO

import msgspec

from airflow_batches.jobs._index import DiskIndex
from airflow_batches.jobs._store import StoragePath, open_to_read

__all__ = ["SIDECAR_FILE", "Sidecar", "load_sidecar", "original_key", "sidecar_entries"]

SIDECAR_FILE = "sidecar.jsonl"
_ORIGINAL = "\x01"


class _Entry(msgspec.Struct, omit_defaults=True):
    id: str | None = None
    metadata: msgspec.Raw = msgspec.Raw(b"")
    key: str | None = None
    custom_id: str | None = None


_decode_entry = msgspec.json.Decoder(_Entry).decode
_encode_entry = msgspec.json.Encoder().encode


def original_key(key: str) -> str:
    """Where the index keeps the original custom_id of a shortened request key."""
    return _ORIGINAL + key


class Sidecar:
    """Writes the sidecar while pre-flight reads the input (see the module docstring).

    ``attach`` gives it how to open its stream (the staging step's temporary file), opened at
    the first entry; ``detach`` closes it. Entries given while detached are dropped.
    """

    name = SIDECAR_FILE

    def __init__(self) -> None:
        self._opener: Callable[[], IO[bytes]] | None = None
        self._stream: IO[bytes] | None = None
        self._held: dict[str, IO[bytes]] = {}
        self.count = 0
        self.with_metadata = 0

    def attach(self, opener: Callable[[], IO[bytes]]) -> None:
        """Write through ``opener``'s stream from now on, counting afresh."""
        self._opener, self._stream = opener, None
        self.count = self.with_metadata = 0

    def detach(self) -> bool:
        """Close the stream if one was opened; whether anything was written."""
        for held in self._held.values():  # not released: the staging failed
            held.close()
        self._held = {}
        stream, self._stream, self._opener = self._stream, None, None
        if stream is None:
            return False
        stream.close()
        return True

    def _write(self, entry: _Entry) -> None:
        self._write_line(_encode_entry(entry) + b"\n")

    def _write_line(self, line: bytes) -> None:
        if self._stream is None:
            if self._opener is None:
                return
            self._stream = self._opener()
        self._stream.write(line)
        self.count += 1

    def metadata(self, custom_id: str, metadata: bytes) -> None:
        """The metadata of a request that passed pre-flight (a ``RequestValidator`` sink):
        its custom_id matches the API's pattern, so it is written as it is (what msgspec
        writes for an ``_Entry``, without encoding one)."""
        if self._opener is not None:
            line = b'{"id":"' + custom_id.encode() + b'","metadata":' + metadata + b"}\n"
            held = self._held.get(custom_id.partition("_")[0]) if self._held else None
            if held is None:
                self._write_line(line)
            else:
                held.write(line)
                self.count += 1
            self.with_metadata += 1

    def hold_back(self, prefixes: Iterable[str]) -> None:
        """Until :meth:`release`, keep the entries of custom_ids ``<prefix>_...`` in local
        temporary files, one a prefix. A matrix pass judges each request's copies together
        (one per model); holding back all but the first model's writes the sidecar model by
        model, in the order of the staged requests and of their batches, which is the order
        the fetch's join reads it in (``jobs._lookahead``: read alongside the results, not
        spilled to disk)."""
        self.release()
        if self._opener is not None:
            self._held = {p: _local_file() for p in prefixes}

    def release(self) -> None:
        """Write the entries held back, prefix by prefix, in the order given."""
        held, self._held = self._held, {}
        for spill in held.values():
            with spill:
                if not spill.tell():
                    continue
                spill.seek(0)
                if self._stream is None:
                    assert self._opener is not None
                    self._stream = self._opener()
                shutil.copyfileobj(spill, self._stream, 1 << 20)

    def original(self, key: str, custom_id: str) -> None:
        """The custom_id a matrix job shortened to ``key``."""
        self._write(_Entry(key=key, custom_id=custom_id))


def _local_file() -> IO[bytes]:
    """A local temporary file (closed, and gone, by :meth:`Sidecar.release` or ``detach``)."""
    return tempfile.TemporaryFile(prefix="airflow-batches-sidecar-")


def sidecar_entries(path: StoragePath) -> Iterator[tuple[str, bytes]]:
    """The sidecar at ``path`` as index entries, in its order: custom_id -> metadata JSON, and
    :func:`original_key` (key) -> original custom_id; one entry a line."""
    with open_to_read(path) as stream:
        for line in stream:
            if line.isspace() or not line:
                continue
            entry = _decode_entry(line)
            if entry.id is not None:
                yield entry.id, bytes(entry.metadata)
            if entry.key is not None and entry.custom_id is not None:
                yield original_key(entry.key), entry.custom_id.encode()


def load_sidecar(path: StoragePath, index: DiskIndex) -> int:
    """Stream the sidecar at ``path`` into ``index`` (:func:`sidecar_entries`); returns the
    entries read. The first entry of a custom_id wins (a later one is a duplicate pre-flight
    refused)."""
    count = 0
    for key, value in sidecar_entries(path):
        index.put(key, value)
        count += 1
    return count
