"""The one way results are read: every line of a batch, resumed across faults.

Every read of results (the scan for failures to resend, the publish to storage, the XCom
path) goes through :func:`read_batch_lines`, and lines already handed to the caller are never
handed out again: a consumer that writes lines as they come never writes one twice.

Two layers. A cut mid-body is resumed by the client itself (``Client.iter_result_bytes`` with
``resumes``: a ``Range`` request, or a checked re-read; see ``api._results``). When a whole
read fails anyway (a 5xx, 529 or 429 that outlasts the client's own retries, the resumes
spent), the read starts again here, within ``DownloadPolicy.max_tries``, and the lines already
delivered are skipped. They are checked, not trusted: their count and the sum of their keys
(:func:`line_key`) must match what was delivered; otherwise :class:`ResultsChangedError`, and
the caller starts over.

Lines are numbered as they stand in the body, blank ones included, so that every message
names the line a person finds in the file.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NamedTuple

from airflow_batches.api import (
    BatchesError,
    Client,
    MessageBatch,
    ResultsChangedError,
    RetryPolicy,
    retry_delay,
)
from airflow_batches.api._lines import iter_lines
from airflow_batches.api._retry import NOT_FOUND_GRACE, is_transient

__all__ = ["DownloadPolicy", "RawLine", "ResultsChangedError", "ResultsDownloadError"]

_MASK = (1 << 64) - 1


class ResultsDownloadError(BatchesError):
    """A batch's results could not be read within the download budget."""


@dataclass(frozen=True)
class DownloadPolicy:
    """How hard a download tries: ``resumes`` cuts in a row without progress within one read
    (the client resumes them), ``max_tries`` reads of one batch's body in all."""

    resumes: int = 4
    max_tries: int = 4
    retry: RetryPolicy = field(
        default_factory=lambda: RetryPolicy(initial_delay=1.0, max_delay=8.0, max_retry_after=120.0)
    )
    sleep: Callable[[float], None] = time.sleep


class RawLine(NamedTuple):
    number: int
    """1-based number among the raw lines of the body, blank ones included."""
    data: bytes
    """The line without its ``\\n`` (nor a ``\\r`` before it); empty for a blank line."""
    key: int
    """:func:`line_key` of ``data``: equal keys mean (almost surely) equal lines."""


def line_key(data: bytes) -> int:
    """A line's 64-bit key, never 0: Python's keyed hash of its bytes (SipHash, with a secret
    drawn per process), so a server cannot make two different lines share a key as it could
    with a CRC. Keys live only as long as the process (a read, its resumed reads, the check of
    a batch's lines): they are never stored. The secret is only as secret as the process's:
    with ``PYTHONHASHSEED`` set to a number it is known, and the key is then a plain 64-bit
    hash (still far harder to collide on purpose than a CRC, never a proof)."""
    return hash(data) & _MASK or 1


def _skip_checked(lines: Iterator[bytes], count: int, total: int, batch: MessageBatch) -> None:
    """Read past the ``count`` lines already handed out, checking they are the same lines."""
    seen, left = 0, count
    for data in lines:
        seen = (seen + line_key(data)) & _MASK
        left -= 1
        if not left:
            break
    if left or seen != total:
        raise _changed(batch, count)


def read_batch_lines(
    client: Client,
    batch: MessageBatch,
    *,
    policy: DownloadPolicy | None = None,
    log: Any = None,
) -> Iterator[RawLine]:
    """Every raw line of ``batch``'s results, exactly once, across cuts and transient errors.

    Raises :class:`ResultsDownloadError` naming the batch once ``policy.max_tries`` reads have
    failed, :class:`ResultsChangedError` if a re-read differs, and the client's own error for
    a permanent failure (results archived, 401, ...).
    """
    policy = policy or DownloadPolicy()
    new = tuple.__new__  # a RawLine without its Python-level __new__
    count = total = 0  # what has been handed out: lines, and the sum of their keys
    tries = 0
    while True:
        tries += 1
        try:
            lines = iter_lines(
                client.iter_result_bytes(batch, resumes=policy.resumes), keep_blank=True
            )
            if count:
                _skip_checked(lines, count, total, batch)
            for data in lines:
                key = hash(data) & _MASK or 1  # line_key, inline
                count += 1
                total = (total + key) & _MASK
                yield new(RawLine, (count, data, key))
            return
        except ResultsChangedError:
            raise
        except BatchesError as exc:
            if not _retryable(exc, batch):
                raise
            if tries >= policy.max_tries:
                raise ResultsDownloadError(
                    f"could not read the results of batch {batch.id}: {tries} attempt(s) "
                    f"failed, {count} line(s) read; last error: {exc}"
                ) from exc
            asked = getattr(exc, "retry_after", None)
            headers = {"retry-after": str(asked)} if asked else None
            wait = retry_delay(tries - 1, headers, policy.retry)
            if log is not None:
                log.warning(
                    "Reading the results of batch %s failed after %d line(s) (%s); reading "
                    "again in %.1fs, skipping what was read (try %d of %d)",
                    batch.id,
                    count,
                    exc,
                    wait,
                    tries + 1,
                    policy.max_tries,
                )
            policy.sleep(wait)


def _retryable(exc: BatchesError, batch: MessageBatch) -> bool:
    ended = batch.ended_at or batch.created_at
    grace = (ended + timedelta(seconds=NOT_FOUND_GRACE)).timestamp()
    return is_transient(exc, now=time.time(), not_found_grace_until=grace)


def _changed(batch: MessageBatch, count: int) -> ResultsChangedError:
    return ResultsChangedError(
        f"the results of batch {batch.id} read again after a broken download are not the "
        f"{count} line(s) read before; starting over"
    )
