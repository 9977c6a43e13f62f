"""``scores.jsonl``: its line (:class:`ScoreLine`), and an earlier run's lines as the entries
an evaluation compares with (:func:`score_entries`) and may take a score from
(:func:`same_answer`, ``_reuse``).

An entry is keyed ``(model label, custom_id)`` (:func:`entry_key`); its value packs the score
and the pass, then, when the line has them, the answer's digest (16 bytes) and the details
(JSON). A request not scored then is an entry with no value.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from airflow_batches.evals._scorers import Score
from airflow_batches.jobs import DiskIndex

__all__ = ["PACKED", "ScoreLine", "entry_key", "load_scores", "same_answer", "score_entries"]

PACKED = struct.Struct(">d?")
"""The score and the pass at the head of an entry's value."""
_REUSABLE = PACKED.size + 16
"""An entry this long or longer carries an answer digest."""


class ScoreLine(msgspec.Struct, omit_defaults=True):
    custom_id: str
    model: str
    type: str
    score: float | None = None
    passed: bool | None = None
    cached: bool = False
    category: str | None = None
    details: dict[str, Any] | msgspec.Raw | None = None
    """What the scorer said besides the score (a reused score's: the baseline's bytes)."""
    digest: str | None = None
    """The answer's and metadata's digest (``_reuse.answer_digest``), when the scorer has a
    fingerprint."""
    reused: bool = False
    """The score is the baseline's: same answer, same metadata, same scorer."""


class _Entry(msgspec.Struct):
    """A ``scores.jsonl`` line as an entry reads it: the details stay bytes."""

    custom_id: str
    model: str
    type: str
    score: float | None = None
    passed: bool | None = None
    details: msgspec.Raw = msgspec.Raw(b"")
    digest: str | None = None


_decode_entry = msgspec.json.Decoder(_Entry).decode


def entry_key(model: str, custom_id: str) -> str:
    return f"{model}\x1f{custom_id}"


def score_entries(lines: Iterable[bytes]) -> Iterator[tuple[str, bytes]]:
    """A ``scores.jsonl`` (an earlier run's) as entries ``(model, custom_id) -> (score,
    passed)`` packed, then, when the line has one, the answer's digest (16 bytes) and the
    details (JSON), in its order; a request not scored then is an entry with no value."""
    pack = PACKED.pack
    for raw in lines:
        if raw.isspace() or not raw:
            continue
        entry = _decode_entry(raw)
        score, passed = entry.score, entry.passed
        if score is None or passed is None:
            packed = b""
        else:
            digest = _digest_bytes(entry.digest)
            if digest is None:  # not a digest of ours: the score is compared, never reused
                packed = pack(score, passed)
            else:
                details = memoryview(entry.details)  # kept when an object (not null, nor none)
                packed = b"".join(
                    (pack(score, passed), digest, details if details[:1].tobytes() == b"{" else b"")
                )
        yield entry_key(entry.model, entry.custom_id), packed


def _digest_bytes(text: str | None) -> bytes | None:
    """A score line's ``digest`` as its 16 bytes: 32 hexadecimal digits, nothing else (a
    space or a sign between them leaves fewer than 16 bytes, or is refused)."""
    if text is None or len(text) != 32:
        return None
    try:
        digest = bytes.fromhex(text)
    except ValueError:
        return None
    return digest if len(digest) == 16 else None


def same_answer(packed: bytes | None, digest: bytes) -> tuple[Score, bytes] | None:
    """The baseline's score (packed by :func:`score_entries`) when it was given to an answer
    with this digest, and its details as the baseline wrote them (empty: none); else None."""
    if not packed or len(packed) < _REUSABLE or packed[PACKED.size : _REUSABLE] != digest:
        return None
    score, passed = PACKED.unpack_from(packed)
    return Score(score, passed), packed[_REUSABLE:]


def load_scores(lines: Iterable[bytes], index: DiskIndex) -> int:
    """Put a ``scores.jsonl`` (an earlier run's) into ``index``: ``(model, custom_id) ->
    (score, passed)``, scored requests only."""
    count = 0
    for key, packed in score_entries(lines):
        if packed:
            index.put(key, packed)
            count += 1
    return count
