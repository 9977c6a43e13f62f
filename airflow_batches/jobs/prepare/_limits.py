"""The numbers pre-flight enforces: per-batch limits, and the bounds of one request line."""

from __future__ import annotations

from dataclasses import dataclass

from airflow_batches.api._envelope import ENVELOPE_BYTES
from airflow_batches.api._models import MAX_REQUESTS_PER_BATCH

DEFAULT_MAX_BYTES = 256_000_000
"""The API's "256 MB" per batch, read the strict (decimal) way."""

MAX_LINE_BYTES = DEFAULT_MAX_BYTES - ENVELOPE_BYTES
"""The longest request line that can fit a batch body at all; a longer line is rejected while
it is read, without ever being held in memory."""

MAX_NESTING = 100
"""Deepest nesting of arrays and objects accepted in one request (the request object itself
is level 1). Real requests, tool schemas included, stay far below it; thousands of levels are
an attack on the parser."""

MAX_TOKENS_CEILING = 2**31 - 1
"""A generic upper bound for ``max_tokens``; no model's limit comes near it (per-model limits
are the model rules' business). It lets an integer of thousands of digits be judged as what it
is: a ``max_tokens`` out of range."""


@dataclass(frozen=True)
class Limits:
    """Per-batch limits used to shard a job.

    The API allows 100,000 requests or 256 MB per batch. "MB" is not defined further, so the
    byte limit defaults to the stricter decimal reading (256,000,000 bytes of body, measured on
    the exact bytes sent, envelope and separators included).
    """

    max_requests: int = MAX_REQUESTS_PER_BATCH
    max_bytes: int = DEFAULT_MAX_BYTES

    def __post_init__(self) -> None:
        if self.max_requests < 1:
            raise ValueError("max_requests must be >= 1")
        if self.max_bytes <= ENVELOPE_BYTES:
            raise ValueError(f"max_bytes must be > {ENVELOPE_BYTES}")
