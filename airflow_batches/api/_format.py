"""How texts, values and figures from data are shown: one rule for cutting a text, one for
quoting a value from the input, one for rounding."""

from __future__ import annotations

from typing import Any

__all__ = ["ELLIPSIS", "VALUE_CHARS", "json_kind", "round_or_none", "shorten", "show"]

ELLIPSIS = "…"
VALUE_CHARS = 60
"""How much of a value from the input an error message quotes."""


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis marks the cut), lone surrogates
    escaped, so that a message quoting data never fails to encode."""
    if len(text) > limit:
        text = text[: limit - 1] + ELLIPSIS
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def show(value: Any) -> str:
    """A value from the input as a message quotes it: short, and never failing."""
    if isinstance(value, str):
        return repr(value[:VALUE_CHARS]) + (ELLIPSIS if len(value) > VALUE_CHARS else "")
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        if value.bit_length() > 64:  # repr of a huge int is slow, or refused past 4,300 digits
            return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
        return repr(value)
    return json_kind(value)


def json_kind(value: Any) -> str:
    """The JSON kind of a value, for "expected an object, got a list" messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def round_or_none(value: float | None, decimals: int) -> float | None:
    """A figure rounded for a manifest or summary; None stays None (unknown is not zero)."""
    return None if value is None else round(value, decimals)
