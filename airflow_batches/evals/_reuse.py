"""Last night's score for an unchanged answer: when it may be taken instead of scoring again.

A score depends on three things: the answer (the line's ``result``), the request's metadata
(the expected answer, the schema, the category) and the scorer with its settings. The
evaluation keeps a digest of the first two beside each score in ``scores.jsonl``
(:func:`answer_digest`) and a fingerprint of the third in ``summary.json``
(:func:`scorer_fingerprint`). When tonight's scorer has last night's fingerprint and a line's
answer and metadata have its digest, the score is last night's (``"reused": true`` in
``scores.jsonl``): an answer the cross-run cache gave again is not judged again, which for a
scorer that calls a model is money, not only time.

The fingerprint is what makes this safe, so it is given only where it is known:

* the built-in scorers (``exact_match``, ``contains``, ``regex``, ``json_schema``,
  ``numeric``, ``by_category`` over fingerprinted scorers): their kind, every setting, and the
  package's version (a release that changes a built-in scores everything again once);
* a scorer of the user's own only when it says which version of itself it is: a ``version``
  attribute (a non-empty string; ``my_scorer.version = "2"``), to be changed whenever what it
  returns may change. Without one, a user's scorer scores every line, every night.

``pass_threshold`` and ``group_by`` are part of the fingerprint; ``reuse_scores=False`` turns
the whole thing off.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping
from typing import Any

import msgspec

from airflow_batches._version import __version__
from airflow_batches.evals._builtin import _Named

__all__ = ["answer_digest", "members_digest", "scorer_fingerprint"]


class _Members(msgspec.Struct):
    """The two members of a published line a score depends on, as their bytes."""

    result: msgspec.Raw
    metadata: msgspec.Raw = msgspec.Raw(b"")
    """Empty when the line has none (``null`` when it says so: another digest)."""


_decode_members = msgspec.json.Decoder(_Members).decode
_encode_sorted = msgspec.json.Encoder(order="sorted").encode


def answer_digest(line: bytes) -> bytes | None:
    """BLAKE2b-128 of a published line's ``result`` and ``metadata`` bytes; None when the line
    cannot be read that way (it is scored, never reused)."""
    try:
        members = _decode_members(line)
    except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
        return None
    return members_digest(members.result, members.metadata)


_BLAKE2B_128 = hashlib.blake2b(digest_size=16)


def members_digest(result: bytes | msgspec.Raw, metadata: bytes | msgspec.Raw) -> bytes:
    """:func:`answer_digest` of a line whose two members were read already (as their bytes;
    ``metadata`` empty when the line has none)."""
    digest = _BLAKE2B_128.copy()  # cheaper than a new hash object with its options
    digest.update(result)  # Raw is a buffer: no copy
    digest.update(b"\x1f")
    digest.update(metadata)
    return digest.digest()


def scorer_fingerprint(scorer: Any, *, pass_threshold: float, group_by: str | None) -> str | None:
    """The fingerprint of a scorer and the settings that shape its scores, or None when the
    scorer's verdicts cannot be vouched for (a callable of the user's without ``version``)."""
    spec = _spec(scorer)
    if spec is None:
        return None
    whole = {"scorer": spec, "pass_threshold": pass_threshold, "group_by": group_by}
    try:
        encoded = _encode_sorted(whole)
    except (TypeError, msgspec.EncodeError):  # a setting that is not JSON: not vouched for
        return None
    return hashlib.blake2b(encoded, digest_size=16).hexdigest()


def _spec(scorer: Any) -> Any:
    if isinstance(scorer, _Named):  # a built-in: a dataclass of its settings
        fields: dict[str, Any] = {}
        for field in dataclasses.fields(scorer):
            value = _setting(getattr(scorer, field.name))
            if value is _UNKNOWN:
                return None
            fields[field.name] = value
        return {"built_in": type(scorer).__name__, "release": __version__, "settings": fields}
    version = getattr(scorer, "version", None)
    if isinstance(version, str) and version.strip():
        kind = scorer if hasattr(scorer, "__qualname__") else type(scorer)
        where = f"{getattr(kind, '__module__', '?')}:{getattr(kind, '__qualname__', '?')}"
        return {"callable": where, "version": version}
    return None


_UNKNOWN = object()


def _setting(value: Any) -> Any:
    """A built-in's setting as plain data; a nested scorer by its own spec."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, re.Pattern):
        return {"pattern": value.pattern, "flags": value.flags}
    if callable(value):
        spec = _spec(value)
        return _UNKNOWN if spec is None else spec
    if isinstance(value, Mapping):
        items = {str(k): _setting(v) for k, v in value.items()}
        return _UNKNOWN if any(v is _UNKNOWN for v in items.values()) else items
    if isinstance(value, list | tuple):
        listed = [_setting(v) for v in value]
        return _UNKNOWN if any(v is _UNKNOWN for v in listed) else listed
    return _UNKNOWN
