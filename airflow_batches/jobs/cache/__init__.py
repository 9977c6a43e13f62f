"""The cross-run cache: a request answered before is answered from that result, not sent
again (``_lookup``: keys and the lookup at submission; ``_writer``: storing a fetch's new
answers; ``_layout``: the segments on storage)."""

from __future__ import annotations

from airflow_batches.jobs.cache._layout import CACHE_FOLDER
from airflow_batches.jobs.cache._lookup import (
    CacheInfo,
    CacheStep,
    CrossRunCache,
    endpoint_identity,
    request_cache_key,
)
from airflow_batches.jobs.cache._writer import CacheWriter

__all__ = [
    "CACHE_FOLDER",
    "CacheInfo",
    "CacheStep",
    "CacheWriter",
    "CrossRunCache",
    "endpoint_identity",
    "request_cache_key",
]
