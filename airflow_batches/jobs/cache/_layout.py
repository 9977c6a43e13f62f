"""The cross-run cache's layout on storage and the records it is made of (see ``_lookup``).

``<cache_path>/v2/`` holds append-only segments: ``<segment>.jsonl``, one :class:`StoredLine`
per stored result, and ``<segment>.keys``, fixed-width :data:`KEYS_RECORD` records (key 16
bytes, :func:`custom_id_hash` 8, offset 8, length 4) into the ``.jsonl``, written once it is
complete. A job's folder holds its lookup under ``cache/``.
"""

from __future__ import annotations

import hashlib
import struct

import msgspec

CACHE_FOLDER = "cache"
VERSION = "v2"
CACHED_FILE = f"{CACHE_FOLDER}/cached.jsonl"
UNCACHED_FILE = f"{CACHE_FOLDER}/uncached.jsonl"
KEYS_FILE = f"{CACHE_FOLDER}/keys.jsonl"
PLAN_FILE = f"{CACHE_FOLDER}/plan.json"
KEYS_RECORD = struct.Struct(">16s8sQI")


class StoredLine(msgspec.Struct):
    """One stored result: its key, the custom_id and batch that answered it, the result."""

    key: str
    custom_id: str
    batch_id: str
    result: msgspec.Raw


class KeyLine(msgspec.Struct):
    """A miss of a job's lookup: its custom_id and key (``keys.jsonl``)."""

    custom_id: str
    key: str


decode_key_line = msgspec.json.Decoder(KeyLine).decode


def custom_id_hash(custom_id: str) -> bytes:
    """The 8 bytes of a custom_id in a ``.keys`` record (BLAKE2b-64)."""
    return hashlib.blake2b(custom_id.encode(), digest_size=8).digest()
