"""How texts and figures from data are shown: one rule for cutting a text, one for rounding."""

from __future__ import annotations

__all__ = ["ELLIPSIS", "round_or_none", "shorten"]

ELLIPSIS = "…"


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis marks the cut), lone surrogates
    escaped, so that a message quoting data never fails to encode."""
    if len(text) > limit:
        text = text[: limit - 1] + ELLIPSIS
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def round_or_none(value: float | None, decimals: int) -> float | None:
    """A figure rounded for a manifest or summary; None stays None (unknown is not zero)."""
    return None if value is None else round(value, decimals)
