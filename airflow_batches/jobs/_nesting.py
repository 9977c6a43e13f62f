"""Result lines that nest deeper than a parser may go: read what is needed, keep the bytes.

A result line is the API's: a ``tool_use`` input can nest arrays and objects thousands of
levels deep. msgspec and the ``json`` module both recurse, and stop with ``RecursionError``
near the interpreter's recursion limit (about a thousand levels under the default limit;
msgspec even when it only skips a member). The readers of result lines need only members a
few levels down (``custom_id``, ``result.type``, ``result.message.usage``, ``matrix``,
``metadata``), so for such a line they read a *shallow copy* of it: the same JSON with every
array or object nested deeper than ``KEPT_DEPTH`` levels replaced by ``null``. The line
itself is never changed: it is published byte for byte; only what is read of it comes from
the copy. What cannot be read without the deep part (an answer to score) is left unscored,
with the reason (``evals``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

__all__ = ["KEPT_DEPTH", "decode_deep", "shallow"]

T = TypeVar("T")

KEPT_DEPTH = 16
"""Levels of a deep line kept in its shallow copy; every member a reader of result lines
looks at lies within the first six."""

# A JSON string (escapes included) or one bracket: brackets inside strings are never seen.
_TOKEN = re.compile(rb'"(?:[^"\\]++|\\.)*+"|[\[\]{}]', re.DOTALL)
_QUOTE, _OPENERS = ord('"'), frozenset(b"[{")


def shallow(line: bytes, depth: int = KEPT_DEPTH) -> bytes:
    """``line`` with every array or object nested deeper than ``depth`` levels replaced by
    ``null``; everything else as it was. A loop over the brackets, not a recursion: no line is
    too deep for it. A line whose brackets do not balance stays malformed."""
    out: list[bytes] = []
    level, kept, cut = 0, 0, -1
    for match in _TOKEN.finditer(line):
        start = match.start()
        char = line[start]
        if char == _QUOTE:
            continue
        if char in _OPENERS:
            level += 1
            if level == depth + 1:
                cut = start
            continue
        if level == depth + 1 and cut >= 0:
            out += (line[kept:cut], b"null")
            kept, cut = match.end(), -1
        level -= 1
    if cut >= 0:  # an array or object that never closes: cut there, still unclosed
        out += (line[kept:cut], b"null")
        return b"".join(out)
    out.append(line[kept:])
    return b"".join(out)


def decode_deep(decode: Callable[[bytes], T], line: bytes) -> tuple[T, bool]:
    """``decode(line)``, or, when the line nests too deep for the parser, ``decode`` of its
    shallow copy; and whether the copy was read (its deep parts are ``null`` there)."""
    try:
        return decode(line), False
    except RecursionError:
        pass
    return decode(shallow(line)), True
