"""Strict JSON for requests: one JSONL line, or one Python value, judged before it is sent.

What "strict" adds to JSON as most parsers read it: no duplicate keys in any object (parsers
disagree on which value wins), valid UTF-8 and no lone surrogates (escaped or encoded; no API
accepts them), no byte-order mark inside a line, no NaN or Infinity, no number out of any
range (``1e400``, an integer of thousands of digits), and at most ``MAX_NESTING`` levels.

**Fast path.** jiter (pydantic's JSON parser, compiled) decodes the line with its duplicate-key
check on and NaN and Infinity refused; it also refuses invalid UTF-8, lone surrogates, control
characters, integers past Python's conversion limit, and nesting past its own limit (200
levels). What it lets through is a number past a double (``1e400`` becomes ``inf``) and nesting
between ``MAX_NESTING`` and its limit, so one walk over the decoded value measures its depth
and finds its floats: a line that nests too deep or holds a float that is not finite takes the
careful path (which names the field). The same walk counts the floats written with an
exponent, which decide how a request that must be encoded again is encoded
(:func:`decode_request`). The walk is about 1 µs for a typical request; the duplicate-key
check costs jiter about 0.4 µs, where counting keys against the colons of the line cost us 2.

**Careful path**, for the few lines the fast path doubts or refuses: the stdlib decoder with
hooks that keep duplicates, constants and out-of-range numbers as markers, then a walk that
names each fault's field (``params.messages[0].role``).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import jiter

from airflow_batches.api._format import VALUE_CHARS, shorten, show
from airflow_batches.api._request_shape import field_path
from airflow_batches.jobs.prepare._limits import MAX_NESTING

LINE = "(line)"
"""The field of a fault that belongs to the line as a whole."""
BOM = b"\xef\xbb\xbf"

_from_json = jiter.from_json
_PARSE_DEPTH = 500
"""Deeper lines are refused before the careful path parses them (a line less deep is parsed,
so that the walk can name the field that nests too deep). The fast path needs no such
measure: jiter stops at 200 levels whatever ``sys.getrecursionlimit()`` says."""
_TOO_DEEP = f"nests arrays or objects more than {MAX_NESTING} levels deep"
"""The careful path's fault of a line too deep to parse (a line it parses is named by field)."""
_SURROGATE = re.compile("[\ud800-\udfff]")
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = tuple(1 if b in b"[{" else -1 if b in b"]}" else 0 for b in range(256))


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault of a request's JSON: ``field`` is a path (``params.max_tokens``) or ``LINE``."""

    field: str
    message: str


def decode_line(line: bytes) -> tuple[Any, list[Fault]]:
    """The value of one stripped request line, and its faults (none when it is valid).

    The value is ``None`` when the line could not be decoded at all.
    """
    value, faults, _ = decode_request(line)
    return value, faults


def decode_request(line: bytes) -> tuple[Any, list[Fault], bool]:
    """:func:`decode_line`, and whether the value holds a float that encoders write in more
    than one way (an exponent: ``1e-05``, ``1e+16``). Without one, msgspec and ``json.dumps``
    (compact, ``ensure_ascii=False``) write the value byte for byte alike."""
    try:
        value = _from_json(line, allow_inf_nan=False, cache_mode="keys", catch_duplicate_keys=True)
    except ValueError:  # jiter's, for any fault: the careful path names it
        return (*_careful(line), True)
    exotic = False
    if type(value) is dict or type(value) is list:
        try:
            depth, exponents = _census(value)
        except RecursionError:  # a recursion limit set below MAX_NESTING
            return (*_careful(line), True)
        if depth > MAX_NESTING or exponents < 0 or (not line.isascii() and BOM in line):
            return (*_careful(line), True)
        exotic = exponents > 0
    elif type(value) is float:
        if not math.isfinite(value):
            return (*_careful(line), True)
        exotic = "e" in repr(value)
    return value, [], exotic


def _census(node: Any, depth: int = 1) -> tuple[int, int]:
    """The depth of a decoded value, and its floats written with an exponent (-1 once a float
    is not finite: ``1e400`` decodes to ``inf``).

    Recursive (faster than a stack here), and it stops descending past ``MAX_NESTING``, so
    its own depth stays bounded whatever the value's.
    """
    exponents = 0
    deepest = depth
    if depth > MAX_NESTING:
        return deepest, exponents
    if type(node) is dict:
        node = node.values()
    for item in node:
        kind = type(item)
        if kind is dict or kind is list:
            d, e = _census(item, depth + 1)
            if e < 0:
                return d, e
            exponents += e
            if d > deepest:
                deepest = d
        elif kind is float:
            text = repr(item)
            if "n" in text:  # inf, -inf (a NaN cannot be decoded)
                return deepest, -1
            if "e" in text:
                exponents += 1
    return deepest, exponents


# --- careful path ---------------------------------------------------------------------------


class _Object(dict[str, Any]):
    """A decoded object that had duplicate keys; ``duplicates`` names them."""

    __slots__ = ("duplicates",)
    duplicates: list[tuple[str, int]]


@dataclass(frozen=True, slots=True)
class _Invalid:
    """Stands in, in a decoded value, for a token that has no valid meaning."""

    message: str


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    marked = _Object(obj)
    counts = Counter(key for key, _ in pairs)
    marked.duplicates = [(key, n) for key, n in counts.items() if n > 1]
    return marked


def _constant(name: str) -> _Invalid:
    return _Invalid(f"{name} is not valid JSON (no NaN or Infinity)")


def _integer(text: str) -> int | _Invalid:
    try:
        return int(text)
    except ValueError:
        digits = len(text.lstrip("-"))
        return _Invalid(f"out of range: an integer of {digits} digits")


def _number(text: str) -> float | _Invalid:
    value = float(text)
    if math.isinf(value):
        return _Invalid(f"out of range: the number {shorten(text, VALUE_CHARS)} is beyond a double")
    return value


_STRICT = json.JSONDecoder(
    object_pairs_hook=_object, parse_constant=_constant, parse_int=_integer, parse_float=_number
)


def _careful(line: bytes) -> tuple[Any, list[Fault]]:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [Fault(LINE, _utf8_message(line, exc))]
    at = line.find(BOM)
    if at >= 0:
        return None, [
            Fault(
                LINE,
                f"a byte-order mark (EF BB BF) at byte {at + 1}: only the very start of the "
                "file may hold one (were files concatenated?); write \\ufeff to mean the "
                "character",
            )
        ]
    at = line.find(b"\x00")
    if at >= 0:
        return None, [
            Fault(LINE, f"a NUL byte at byte {at + 1}: JSON has none (UTF-16 text, or binary?)")
        ]
    if nests_deeper(line, _PARSE_DEPTH):
        return None, [Fault(LINE, _TOO_DEEP)]
    try:
        value = _STRICT.decode(text)
    except json.JSONDecodeError as exc:
        return None, [Fault(LINE, _syntax_message(text, exc))]
    except RecursionError:
        return None, [Fault(LINE, _TOO_DEEP)]
    return value, audit(value)


def nests_deeper(line: bytes, limit: int) -> bool:
    """Whether a JSON line nests arrays and objects more than ``limit`` levels: measured over
    its brackets (strings left out), never parsed, so no depth is too deep to measure."""
    if line.count(b"[") + line.count(b"{") <= limit:
        return False
    skeleton = _STRING.sub(b"", line) if b'"' in line else line
    skeleton = skeleton.translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, skeleton)), default=0) > limit


def _utf8_message(line: bytes, exc: UnicodeDecodeError) -> str:
    start = exc.start
    bad = line[start : start + 4]
    if bad[:1] == b"\xed" and len(bad) > 1 and 0xA0 <= bad[1] <= 0xBF:
        what = f"a UTF-8-encoded surrogate ({bad[:3].hex(' ')}): CESU-8 or WTF-8, not UTF-8"
    else:
        what = f"{exc.reason} ({line[start : max(exc.end, start + 1)][:4].hex(' ')})"
    return f"invalid UTF-8 at byte {start + 1}: {what}; requests must be UTF-8 (Latin-1 text?)"


def _syntax_message(text: str, exc: json.JSONDecodeError) -> str:
    where = f"at column {exc.colno}"
    reason = exc.msg.removesuffix(" at")
    if exc.msg == "Extra data":
        if "\r" in text:
            return (
                f"not valid JSON: data after the request object {where} (lines that end "
                "with \\r alone? JSONL lines end with \\n)"
            )
        return (
            f"not valid JSON: data after the request object {where} (two requests on one "
            "line, or something appended to it?)"
        )
    message = f"not valid JSON: {reason} {where}"
    if text.strip() in ("[", "{"):
        message += (
            " (a JSON array, or JSON written over several lines? a requests file is JSONL: "
            "one request object per line)"
        )
    elif "'custom_id'" in text[:200]:
        message += " (single quotes: a Python repr, not JSON?)"
    return message


# --- the walk that names fields ---------------------------------------------------------------


def audit(value: Any) -> list[Fault]:
    """Every fault of a decoded or in-memory value, in document order, each with its path.

    Also judges what only Python values can hold: keys that are not strings, floats that are
    not finite, types that are not JSON, integers too long to write. A container met twice is
    walked once (a cycle is then left to the encoder, which refuses it).
    """
    faults: list[Fault] = []
    stack: list[tuple[Any, Any, int]] = [(value, None, 1)]
    walked: set[int] = set()
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, Mapping | list | tuple):
            if id(item) in walked:
                continue
            walked.add(id(item))
            if depth > MAX_NESTING:
                faults.append(Fault(_render(path), _deeper_message()))
            elif isinstance(item, Mapping):
                _open_object(item, path, depth, stack, faults)
            else:
                stack.extend((item[i], (path, i), depth + 1) for i in range(len(item) - 1, -1, -1))
        elif isinstance(item, str):
            if not item.isascii() and _SURROGATE.search(item):
                faults.append(Fault(_render(path), _surrogate_message(item)))
        elif isinstance(item, bool) or item is None:
            pass
        elif isinstance(item, int):
            if item.bit_length() > 14_000:  # beyond what int-to-text conversion accepts by default
                faults.append(Fault(_render(path), f"out of range: {show(item)}"))
        elif isinstance(item, float):
            if not math.isfinite(item):
                faults.append(
                    Fault(_render(path), f"{item!r} is not valid JSON (no NaN or Infinity)")
                )
        elif isinstance(item, _Invalid):
            faults.append(Fault(_render(path), item.message))
        else:
            faults.append(Fault(_render(path), f"{type(item).__name__} is not a JSON value"))
    return faults


def _open_object(
    node: Mapping[Any, Any],
    path: Any,
    depth: int,
    stack: list[tuple[Any, Any, int]],
    faults: list[Fault],
) -> None:
    """Judge an object's keys; push its values (last first, so they pop in order)."""
    for key, dupes in node.duplicates if type(node) is _Object else ():
        faults.append(
            Fault(
                _render((path, key)),
                f"duplicate key: given {dupes} times in one object (parsers disagree on which "
                "value wins)",
            )
        )
    children = []
    for key, item in node.items():
        if not isinstance(key, str):
            faults.append(Fault(_render(path), f"key {show(key)} is not a string"))
            continue
        if not key.isascii() and _SURROGATE.search(key):
            faults.append(Fault(_render((path, key)), _surrogate_message(key)))
        children.append((item, (path, key), depth + 1))
    stack.extend(reversed(children))


def _deeper_message() -> str:
    return f"nested more than {MAX_NESTING} levels deep"


def _surrogate_message(text: str) -> str:
    found = _SURROGATE.search(text)
    code = f"\\u{ord(found.group()):04x}" if found else "?"
    return f"holds a lone surrogate ({code}), which is not valid Unicode; no API accepts it"


def _render(path: Any) -> str:
    """``params.messages[0].role`` from the linked ``(parent, key)`` pairs of a path."""
    keys: list[Any] = []
    while isinstance(path, tuple):
        path, key = path
        keys.append(key)
    return field_path(reversed(keys))
