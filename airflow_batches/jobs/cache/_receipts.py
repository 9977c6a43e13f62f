"""Pre-flight's verdict remembered: an input judged before is not judged again.

A nightly eval sends the same questions, night after night, and pre-flight is deterministic:
the same input, read with the same settings by the same code, is staged into the same bytes,
with the same problems. So after pre-flight a *receipt* is written in the cache folder
(``receipts/<digest>.json``), named by a digest of

* the input: every record, with its location (``line 12``), in order;
* what pre-flight's outcome depends on: the validator's API version, defaults, default model,
  limits and metadata sink, each of its checks' ``identity`` (the model rules check names its
  table, betas and disabled rules; a check without one turns receipts off, as do observers,
  which must see every request), the model matrix, ``on_invalid``, and the source code of the
  modules that judge (any change to them is a new digest).

The receipt names the job's folder, its fingerprint and what pre-flight made of it. A later
job with the same digest copies that folder's staged files (requests, sidecar, rejected) into
its own and goes on from there, as if it had judged them; if the earlier folder no longer
holds them (cleaned up), it judges the input as ever. Receipts are written and read only with
a cross-run cache; the cache's ``max_age`` bounds them too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import asdict
from functools import cache
from importlib import resources
from typing import Any

import msgspec

from airflow_batches._version import __version__
from airflow_batches.jobs._descriptor import job_key
from airflow_batches.jobs._store import (
    JobStore,
    StoragePath,
    atomic_writer,
    child,
    clone,
    fresh,
)
from airflow_batches.jobs.cache._layout import KEYS_MEMO
from airflow_batches.jobs.prepare import (
    REJECTED_FILE,
    REQUESTS_FILE,
    Parts,
    Prepared,
    Problem,
    RequestValidator,
    Shard,
    Staged,
    matrix_input,
    once_source,
)

__all__ = ["RECEIPTS", "input_digest", "recall", "remember"]

RECEIPTS = "receipts"
_FORMAT = b"airflow-batches pre-flight receipt 1\n"
_JUDGES = ("jobs/prepare", "api/_request_shape.py", "api/_envelope.py", "api/_rules.py")
_encode = msgspec.json.Encoder().encode


@cache
def _code_digest() -> str:
    """The source of the modules that judge requests, hashed (the version if unreadable)."""
    digest = hashlib.sha256(__version__.encode())
    root = resources.files("airflow_batches")
    try:
        for name in _JUDGES:
            node = root.joinpath(name)
            files = sorted(node.iterdir(), key=lambda f: f.name) if node.is_dir() else [node]
            for item in files:
                if item.name.endswith(".py") or item.name.endswith(".toml"):
                    digest.update(item.name.encode() + b"\0" + item.read_bytes())
    except OSError:
        return f"version {__version__}"
    return digest.hexdigest()


def input_digest(
    records: Iterable[tuple[str, Any]] | Parts, validator: RequestValidator, on_invalid: str
) -> str | None:
    """The digest that names the receipt of this input and settings; None when pre-flight's
    outcome cannot be told from them (see the module docstring), or the input cannot be read
    twice."""
    if validator.observers or not isinstance(records, Parts):
        return None
    identities = [getattr(check, "identity", None) for check in validator.checks]
    if None in identities:
        return None
    matrix = matrix_input(records)
    source = matrix.source if matrix is not None else once_source(records)
    if source is None:
        return None
    settings = {
        "anthropic_version": validator.anthropic_version,
        "defaults": validator.defaults,
        "default_model": validator.default_model,
        "limits": asdict(validator.limits),
        "metadata": validator.metadata is not None,
        "checks": identities,
        "matrix": matrix.matrix.to_json() if matrix is not None else None,
        "sidecar": matrix is not None and matrix.sidecar is not None,
        "on_invalid": on_invalid,
        "code": _code_digest(),
    }
    try:  # in order: the order of the defaults (and of what they hold) is that of the bytes
        head = json.dumps(settings, default=repr).encode()
    except (TypeError, ValueError):
        return None
    digest = hashlib.sha256(_FORMAT + head)
    update = digest.update
    for location, raw in source():
        if type(raw) is not bytes:
            try:
                raw = _encode(raw)
            except (TypeError, msgspec.EncodeError):
                return None
        update(location.encode() + b"\0" + raw + b"\n")
    return digest.hexdigest()


def recall(folder: StoragePath, digest: str, root: JobStore, sidecar: Any) -> Staged | None:
    """The job staged from the receipt ``digest`` in ``folder``, its files copied under
    ``root``; None when there is no receipt, or its job's files are gone."""
    try:
        with fresh(child(folder, RECEIPTS, f"{digest}.json")).open("rb") as stream:
            receipt = json.loads(stream.read())
    except (FileNotFoundError, ValueError):
        return None
    earlier = _folder_near(root, receipt["job_dir"])
    if earlier is None:
        return None
    prepared = _prepared(receipt["prepared"])
    job = root.sub(job_key(prepared.fingerprint))
    names = [REQUESTS_FILE, *receipt.get("files", [])]
    try:
        for name in names:
            target = job.path(name)
            if not fresh(target).exists():
                clone(earlier.path(name), target)
    except FileNotFoundError:
        return None
    with suppress(FileNotFoundError):  # what the earlier job's lookup found out, if any
        if not fresh(job.path(KEYS_MEMO)).exists():
            clone(earlier.path(KEYS_MEMO), job.path(KEYS_MEMO))
    for name, value in (receipt.get("sidecar") or {}).items():
        with suppress(AttributeError):
            setattr(sidecar, name, value)
    return Staged(job, prepared)


def remember(folder: StoragePath, digest: str, staged: Staged, sidecar: Any) -> None:
    """Write the receipt of a job just staged (replacing any of the same digest)."""
    files = [name for name in (REJECTED_FILE,) if staged.prepared.rejected]
    counts: dict[str, int] = {}
    written = int(getattr(sidecar, "count", 0) or 0) if sidecar is not None else 0
    if written:
        files.append(sidecar.name)
        counts = {"count": written, "with_metadata": int(getattr(sidecar, "with_metadata", 0))}
    prepared = staged.prepared
    receipt = {
        "job_dir": str(staged.store.root),
        "files": files,
        "sidecar": counts,
        "prepared": {
            "fingerprint": prepared.fingerprint,
            "request_count": prepared.request_count,
            "shards": [asdict(shard) for shard in prepared.shards],
            "rejected": [problem.to_dict() for problem in prepared.rejected],
            "rejected_count": prepared.rejected_count,
        },
    }
    with atomic_writer(child(folder, RECEIPTS, f"{digest}.json")) as out:
        out.write(json.dumps(receipt).encode())


def _prepared(data: dict[str, Any]) -> Prepared:
    return Prepared(
        fingerprint=data["fingerprint"],
        request_count=data["request_count"],
        shards=[Shard(**shard) for shard in data["shards"]],
        rejected=[Problem(**problem) for problem in data.get("rejected", [])],
        rejected_count=data.get("rejected_count", 0),
    )


def _folder_near(root: JobStore, job_dir: str) -> JobStore | None:
    """The folder ``job_dir`` reached from ``root`` through their nearest common ancestor
    (both are under the same staging base), or None."""
    here = root.root
    for ancestor in (here, *here.parents):  # type: ignore[attr-defined]
        base = str(ancestor).rstrip("/")
        if job_dir.startswith(base + "/"):
            parts = [p for p in job_dir[len(base) + 1 :].split("/") if p]
            if ".." in parts:
                return None
            return JobStore(child(ancestor, *parts))
    return None
