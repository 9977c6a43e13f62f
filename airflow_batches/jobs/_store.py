"""Where a job keeps what must outlive a task try: shared storage, never local disk.

Works on any path object with the ``pathlib`` surface that ``ObjectStoragePath`` (file://,
s3://, gs://, ...) and ``pathlib.Path`` share (the :class:`StoragePath` protocol), so the jobs
layer needs no Airflow import.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import IO, Any, Protocol, Self, runtime_checkable


@runtime_checkable
class StoragePath(Protocol):
    """What the jobs layer uses of a path: ``pathlib.Path`` and ``ObjectStoragePath`` both fit."""

    @property
    def name(self) -> str: ...

    @property
    def parent(self) -> Any: ...

    def __truediv__(self, key: str) -> Any: ...

    def open(self, *args: Any, **kwargs: Any) -> Any: ...

    def exists(self) -> bool: ...

    def unlink(self, missing_ok: bool = ...) -> None: ...

    def rename(self, target: Any) -> Any: ...

    def mkdir(self, *args: Any, **kwargs: Any) -> None: ...


def child(base: StoragePath, *parts: str) -> StoragePath:
    path = base
    for part in parts:
        path = path / part
    return path


DIRECT_WRITE_PROTOCOLS = frozenset({"s3", "s3a"})
"""Object stores whose upload of the final key is atomic and can be aborted (s3fs)."""


def protocol_of(path: StoragePath) -> str:
    protocol = getattr(path, "protocol", "file")
    if isinstance(protocol, tuple | list):
        protocol = protocol[0] if protocol else "file"
    return str(protocol)


def is_local(path: StoragePath) -> bool:
    return protocol_of(path) in ("", "file", "local")


def fresh(path: StoragePath) -> StoragePath:
    """``path``, with what its filesystem cached of it and of its folders dropped.

    fsspec's object stores cache directory listings per process (s3fs, with no expiry by
    default) and answer ``exists`` and ``iterdir`` from them: an object another
    process wrote after this one first listed the folder stays invisible. Call this before
    looking at anything other processes write (the registry, the cross-run cache, staged
    requests, a destination). A no-op on local paths.
    """
    fs = getattr(path, "fs", None)
    invalidate = getattr(fs, "invalidate_cache", None)
    if invalidate is not None:
        with suppress(Exception):
            invalidate(getattr(path, "path", None) or str(path))
    return path


def ensure_dir(path: StoragePath) -> None:
    # Object stores have no directories; creating one there is at best a no-op.
    if is_local(path):
        path.mkdir(parents=True, exist_ok=True)


def _can_discard(stream: Any) -> bool:
    """Whether this writer can throw away an unfinished upload instead of committing it.

    fsspec's buffered writers commit what they hold on close, even after an error, unless the
    filesystem implements ``discard`` (s3fs aborts the multipart upload; a small object is
    sent only at close, so there is nothing to abort).
    """
    discard = getattr(type(stream), "discard", None)
    if discard is None:
        return False
    try:
        from fsspec.spec import AbstractBufferedFile
    except ImportError:  # pragma: no cover - fsspec always comes with Airflow
        return False
    return discard is not AbstractBufferedFile.discard


def open_for_write(path: StoragePath) -> Any:
    """Open ``path`` for writing bytes, returning the file object itself.

    ``ObjectStoragePath.open`` wraps the file to record lineage on every call; on a path that
    writes hundreds of thousands of lines that costs more than the writing. The wrapper is told
    of the write once, and the lines go to the file underneath.
    """
    stream = path.open("wb")
    raw = getattr(stream, "_obj", None)
    if raw is None:
        return stream
    with suppress(Exception):
        stream.write(b"")
    return raw


def open_to_read(path: StoragePath, buffer: int = 1 << 16) -> IO[bytes]:
    """Open ``path`` to read bytes line by line or in many small reads: a local file by its
    name with a ``buffer`` of that many bytes, any other through its filesystem.

    A local file's default buffer is its block size (4 KiB here): a system call every few
    lines, which cost the readers of hundreds of thousands of lines a tenth of their time. An
    ``ObjectStoragePath`` of a local file adds a layer of Python (fsspec's file and Airflow's
    wrapper) to every read. The wrapper records a hook-lineage input on ``read`` calls, never
    on iterating lines; the files read here are the job's own (staged requests, the cache,
    results being scored), whose lineage the operators declare themselves (``_lineage``).
    """
    if is_local(path):
        return open(_local_name(path), "rb", buffering=buffer)
    return path.open("rb")  # type: ignore[no-any-return]


@contextmanager
def atomic_writer(target: StoragePath) -> Iterator[IO[bytes]]:
    """Write ``target`` so that no reader ever sees it partly written.

    On an object store whose writer can abort an upload (S3), the final key is written
    directly: the upload is committed at close, and discarded if the write fails (a rename
    there would be a full copy and a delete). Elsewhere (local disks, stores that would commit
    a partial upload) the bytes go to a hidden sibling that is renamed into place once
    complete. Either way a failed write leaves nothing under the target name.
    """
    ensure_dir(target.parent)
    if protocol_of(target) in DIRECT_WRITE_PROTOCOLS:
        stream = open_for_write(target)
        if not _can_discard(stream):
            raise TypeError(f"cannot abort a failed upload to {target}")  # pragma: no cover
        try:
            yield stream
        except BaseException:
            with suppress(Exception):
                stream.discard()
            stream.closed = True
            raise
        stream.close()
        return
    tmp = child(target.parent, f".{target.name}.{uuid.uuid4().hex[:12]}.partial")
    try:
        out = open_for_write(tmp)
        try:
            yield out
        finally:
            out.close()
        tmp.rename(target)
    except BaseException:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def copy_stream(source: IO[bytes], target: IO[bytes]) -> None:
    """Copy what is left of ``source`` to ``target``: in the kernel (``os.sendfile``) when
    both are local files, else in blocks of 4 MiB."""
    try:
        fds = source.fileno(), target.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        fds = None
    if fds is not None:
        target.flush()
        offset = source.tell()
        try:
            while sent := os.sendfile(fds[1], fds[0], offset, 1 << 30):
                offset += sent
        except OSError:  # a filesystem that cannot: copy the rest in blocks
            pass
        else:
            source.seek(offset)
            target.seek(0, os.SEEK_END)  # the writer's own idea of where it is, brought along
            return
        source.seek(offset)
    while block := source.read(1 << 22):
        target.write(block)


def clone(source: StoragePath, target: StoragePath) -> None:
    """Make ``target`` a copy of ``source``, a file never written again (a staged file): a
    hard link on a local disk (no byte written: a copy of a million requests is a GB), a copy
    inside the store on the same object store (S3's CopyObject: nothing through the worker),
    else a copy through this process. Either way ``target`` appears whole or not at all."""
    if is_local(source) and is_local(target):
        ensure_dir(target.parent)
        tmp = child(target.parent, f".{target.name}.{uuid.uuid4().hex[:12]}.partial")
        try:
            os.link(_local_name(source), _local_name(tmp))
        except OSError:  # another filesystem, or one without hard links
            pass
        else:
            try:
                os.replace(_local_name(tmp), _local_name(target))
            except BaseException:
                with suppress(OSError):
                    os.unlink(_local_name(tmp))
                raise
            return
    elif protocol_of(source) in DIRECT_WRITE_PROTOCOLS and _same_store(source, target):
        source.fs.copy(source.path, target.path)  # type: ignore[attr-defined]
        return
    with source.open("rb") as stream, atomic_writer(target) as out:
        copy_stream(stream, out)


def _local_name(path: StoragePath) -> str:
    name = getattr(path, "path", None)  # an ObjectStoragePath's, without its file://
    return name if isinstance(name, str) and name else str(path)


def _same_store(source: StoragePath, target: StoragePath) -> bool:
    fs = getattr(source, "fs", None)
    return fs is not None and fs is getattr(target, "fs", None) and hasattr(fs, "copy")


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
        target = fresh(self.path(*parts))
        if not target.exists():
            return None
        with target.open("rb") as stream:
            return json.loads(stream.read())

    def write_json(self, data: Any, *parts: str) -> None:
        payload = json.dumps(data, indent=2, sort_keys=False, default=str).encode()
        with atomic_writer(self.path(*parts)) as stream:
            stream.write(payload)


_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def file_name(key: str) -> str:
    """The file a user-named part of a publish (a matrix label) is written to: ``<key>.jsonl``,
    every character but ASCII letters, digits, ``-``, ``_`` and ``.`` made ``_``. Not
    injective: :func:`name_clash` finds the keys that would share a file."""
    return "".join(c if c in _NAME_CHARS else "_" for c in key) + ".jsonl"


def name_clash(keys: Iterable[str]) -> tuple[str, str, str] | None:
    """Two keys that :func:`file_name` writes to one file, on storage that ignores case too
    (``(first, second, file name)``), or None."""
    seen: dict[str, str] = {}
    for key in keys:
        name = file_name(key)
        first = seen.setdefault(name.casefold(), key)
        if first != key:
            return first, key, name
    return None


_PART_CHARS = _NAME_CHARS | {"="}


def path_part(text: str) -> str:
    """``text`` as one safe segment of a storage path, different texts never giving the same
    segment: kept as it is when it holds only ASCII letters, digits and ``-_.=`` (and is not
    made of dots alone), else those characters kept, the rest made ``_``, and ``-`` and 16 hex
    digits of its BLAKE2b-64 added (``manual__2026-12-06T20:00:00+00:00`` becomes
    ``manual__2026-12-06T20_00_00_00_00-<hash>``, never the folder of ``...T20_00...``)."""
    safe = "".join(c if c in _PART_CHARS else "_" for c in text)
    if safe == text and text.strip("."):
        return text
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
    return f"{safe}-{digest}"
