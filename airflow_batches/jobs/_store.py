"""Where a job keeps what must outlive a task try: shared storage, never local disk.

Works on any path object with the ``pathlib`` surface that ``ObjectStoragePath`` (file://,
s3://, gs://, ...) and ``pathlib.Path`` share, so the jobs layer needs no Airflow import.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import IO, Any, Self

StoragePath = Any
"""A path with the ``pathlib`` surface that ``ObjectStoragePath`` (file://, s3://, gs://, ...)
and ``pathlib.Path`` share: ``/``, ``open``, ``exists``, ``unlink``, ``mkdir``, ``rename``."""


def child(base: StoragePath, *parts: str) -> StoragePath:
    path: Any = base
    for part in parts:
        path = path / part
    result: StoragePath = path
    return result


def _is_local(path: StoragePath) -> bool:
    protocol = getattr(path, "protocol", "file")
    if isinstance(protocol, tuple | list):
        protocol = protocol[0] if protocol else "file"
    return protocol in ("", "file", "local")


def ensure_dir(path: StoragePath) -> None:
    # Object stores have no directories; creating one there is at best a no-op.
    if _is_local(path):
        path.mkdir(parents=True, exist_ok=True)


@contextmanager
def atomic_writer(target: StoragePath) -> Iterator[IO[bytes]]:
    """Write ``target`` so that no reader ever sees it partly written.

    The bytes go to a hidden sibling first and are moved into place only when the writer
    closes without error: a rename on a local disk; on an object store the upload of the
    final key is itself atomic. A failed write leaves nothing behind under the target name.
    """
    ensure_dir(target.parent)
    tmp = child(target.parent, f".{target.name}.{uuid.uuid4().hex[:12]}.partial")
    try:
        with tmp.open("wb") as stream:
            yield stream
        tmp.rename(target)
    except BaseException:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


class JobStore:
    """The folder of one logical job: its ledger, its staged requests, its raw results."""

    def __init__(self, root: StoragePath) -> None:
        self.root = root

    def __repr__(self) -> str:
        return f"JobStore({str(self.root)!r})"

    def path(self, *parts: str) -> StoragePath:
        return child(self.root, *parts)

    def sub(self, *parts: str) -> Self:
        return type(self)(self.path(*parts))

    def read_json(self, *parts: str) -> Any | None:
        target = self.path(*parts)
        if not target.exists():
            return None
        with target.open("rb") as stream:
            return json.loads(stream.read())

    def write_json(self, data: Any, *parts: str) -> None:
        payload = json.dumps(data, indent=2, sort_keys=False, default=str).encode()
        with atomic_writer(self.path(*parts)) as stream:
            stream.write(payload)
