"""JSON in an answer: finding it (:func:`extract_json`), and checking it against a JSON Schema
(:func:`schema_checker`), for the ``json_schema`` scorer (``_builtin``).

Each schema gets two validators, kept for the next answers (up to 256 schemas): ``jsonschema_rs``
(compiled, in Rust) says whether an answer is valid, in about a microsecond; ``jsonschema`` (in
Python, installed with Airflow) judges what the first calls invalid, and names the first fault.
So every verdict of invalid, and every message, is ``jsonschema``'s. No schema is ever fetched
from elsewhere: a remote ``$ref`` is a request to wherever a request's metadata points.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

__all__ = ["SchemaChecker", "extract_json", "remote_ref", "schema_checker"]

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def _candidates(text: str) -> Iterator[str]:
    """Where :func:`extract_json` looks, in order; each found only when the ones before it
    were not JSON (most answers asked for JSON are JSON: the first try)."""
    yield text.strip()
    for m in _FENCE.finditer(text):
        yield m.group(1).strip()
    for opener, closer in ("{}", "[]"):
        start, end = text.find(opener), text.rfind(closer)
        if 0 <= start < end:
            yield text[start : end + 1]


def extract_json(text: str) -> Any:
    """The JSON value in an answer: the whole text, a fenced block, or the first ``{...}`` or
    ``[...]`` span; ``ValueError`` if there is none, or if it nests deeper than Python's
    parser can go."""
    try:  # most answers asked for JSON are JSON: read at once (JSON's own spaces around it)
        return _decode(text)
    except Exception:
        pass
    too_deep = False
    for candidate in _candidates(text):
        try:
            return _loads(candidate)
        except ValueError:
            continue
        except RecursionError:
            too_deep = True
    if too_deep:
        raise ValueError("the answer's JSON nests deeper than Python's parser can go")
    raise ValueError("no JSON value in the answer")


_decode = msgspec.json.decode


def _loads(text: str) -> Any:
    """``json.loads(text)``, five times faster on what most answers hold: ``msgspec`` reads it
    first, and whatever it refuses (``NaN``, a number past a float, a lone surrogate) is
    ``json``'s to read or refuse. Where both read a text they read the same value (numbers,
    strings, a repeated key's last value): the tests compare them."""
    try:
        return _decode(text)
    except Exception:
        return json.loads(text)


class SchemaChecker:
    """One schema's validators: ``jsonschema_rs`` (compiled, in Rust) says whether an answer is
    valid; ``jsonschema`` (the reference, in Python) judges what the first calls invalid and
    names the first fault. So a valid answer costs a microsecond or so instead of tens, and a
    verdict of invalid and its message are ``jsonschema``'s, as they always were. Without a
    compiled validator (a schema it will not build: a remote ``$ref``, a pattern only Python's
    ``re`` reads), ``jsonschema`` judges every answer."""

    __slots__ = ("fast", "slow")

    def __init__(self, schema: Any) -> None:
        import jsonschema
        import referencing

        # A remote $ref is never fetched (jsonschema would, by default): it is a request to
        # wherever a request's metadata points. Checking an answer against it raises
        # (``referencing.exceptions.Unresolvable``, naming the address): the request is named.
        # (``retrieve`` is an attrs alias mypy does not see.)
        self.slow = jsonschema.Draft202012Validator(
            schema,
            registry=referencing.Registry(retrieve=_refuse),  # type: ignore[call-arg]
        )
        self.fast = _compiled(schema)

    def first_error(self, value: Any) -> str | None:
        """None for a valid answer, else where and why it is not (the first fault by path)."""
        fast = self.fast
        if fast is not None:
            try:
                if fast.is_valid(value):
                    return None
            except Exception:  # a value it cannot take (a huge number, NaN): jsonschema judges
                pass
        slow = self.slow
        if slow.is_valid(value):
            return None
        first = min(slow.iter_errors(value), key=lambda e: list(e.absolute_path))
        where = "/".join(str(p) for p in first.absolute_path) or "(root)"
        return f"{where}: {first.message}"


def _refuse(uri: str) -> Any:
    raise LookupError(f"{uri}: a schema is never fetched from elsewhere")


def _compiled(schema: Any, retriever: Callable[[str], Any] = _refuse) -> Any:
    """A ``jsonschema_rs`` validator of ``schema`` that fetches nothing (``retriever`` is asked
    for any schema outside it, and refuses: a remote ``$ref`` would be a request to wherever
    the metadata points), or None when it will not build."""
    try:
        import jsonschema_rs

        return jsonschema_rs.Draft202012Validator(schema, retriever=retriever)
    except Exception:  # not a schema it takes: the reference judges alone
        return None


def remote_ref(schema: Any) -> str | None:
    """The first address outside the schema that a ``$ref`` of it needs (it would have to be
    fetched, and never is), or None: to refuse such a schema when the scorer is made, before
    a batch is paid for, not at its first answer."""
    asked: list[str] = []

    def record(uri: str) -> Any:
        asked.append(uri)
        return _refuse(uri)

    _compiled(schema, record)
    return asked[0] if asked else None


_VALIDATORS: dict[bytes, SchemaChecker] = {}
_MAX_VALIDATORS = 256


def _schema_key(schema: Any) -> bytes:
    try:
        return b"m" + msgspec.json.encode(schema, order="sorted")
    except (TypeError, msgspec.EncodeError):  # not JSON: keyed as before
        return b"j" + json.dumps(schema, sort_keys=True, default=str).encode()


_AS_WRITTEN: dict[bytes, SchemaChecker] = {}
"""The same validators by the schema's JSON in its own key order: found without sorting
(a request's metadata holds the same schema in the same order, answer after answer)."""
_encode = msgspec.json.Encoder().encode


def schema_checker(schema: Any) -> SchemaChecker:
    """The validators of a schema (JSON Schema 2020-12), kept for the next answers."""
    written: bytes | None
    try:
        written = _encode(schema)
    except (TypeError, msgspec.EncodeError):
        written = None
    found = _AS_WRITTEN.get(written) if written is not None else None
    if found is not None:
        return found
    key = _schema_key(schema)
    validator = _VALIDATORS.get(key)
    if validator is None:
        validator = SchemaChecker(schema)
        if len(_VALIDATORS) < _MAX_VALIDATORS:
            _VALIDATORS[key] = validator
    if written is not None and len(_AS_WRITTEN) < _MAX_VALIDATORS:
        _AS_WRITTEN[written] = validator
    return validator
