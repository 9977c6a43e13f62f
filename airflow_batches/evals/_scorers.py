"""Scorers: how good one answer is, given the request's metadata.

A scorer is any callable ``(result, metadata) -> score``. ``result`` is an :class:`EvalResult`:
the ``result`` object of a succeeded line as the API wrote it (a dict: ``result["message"]``),
with the answer's text as ``result.text``, the tool inputs as ``result.tool_inputs``, and the
line's ``custom_id`` and ``model``. ``metadata`` is what the request carried (``None`` if
nothing). A score is

* a ``bool`` (passed or not; 1.0 or 0.0),
* a number (the score; passed when at least the evaluation's ``pass_threshold``, 1.0 unless
  set),
* a mapping with ``"score"`` (a bool or a number), optionally ``"passed"`` (a bool that wins
  over the threshold) and anything else worth keeping (written to ``scores.jsonl`` under
  ``"details"``),
* or ``None``: not scored (counted as ``unscored``, apart from right and wrong).

Only succeeded results are scored; errored, expired and canceled requests are counted apart,
never as wrong answers.

The built-in scorers are in ``_builtin``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypeGuard

import msgspec

__all__ = ["EvalResult", "Score", "Scorer", "ScorerError", "is_mapping", "to_score"]

Scorer = Callable[["EvalResult", Any], Any]


def is_mapping(value: Any) -> TypeGuard[Mapping[str, Any]]:
    """``isinstance(value, Mapping)``, answered at once for the dicts JSON decodes to (an
    ``isinstance`` against the ABC costs more than the rest of a simple scorer)."""
    return type(value) is dict or isinstance(value, Mapping)


class ScorerError(ValueError):
    """A scorer returned something that is not a score, or was given a bad option."""


class EvalResult(dict[str, Any]):
    """The ``result`` object of one succeeded line, and what a scorer usually wants of it."""

    # One is made per answer: its two attributes in slots, and an instance dict only when a
    # scorer sets an attribute of its own.
    __slots__ = ("__dict__", "custom_id", "model")

    def __init__(
        self, result: Mapping[str, Any], *, custom_id: str = "", model: str | None = None
    ) -> None:
        dict.__init__(self, result)
        self.custom_id = custom_id
        """The line's custom_id (for a matrix job, the request's own, without the prefix)."""
        self.model = model
        """The model label (a matrix job's), or the model that answered."""

    @property
    def message(self) -> Mapping[str, Any]:
        message = self.get("message")
        return message if is_mapping(message) else {}

    @property
    def content(self) -> list[Any]:
        blocks = self.message.get("content")
        return blocks if isinstance(blocks, list) else []

    @property
    def text(self) -> str:
        """The text blocks of the answer, joined (thinking and tool blocks left out)."""
        texts = []  # read by most scorers, once an answer: one loop, no generator
        for block in self.content:
            if is_mapping(block) and block.get("type") == "text":
                text = block.get("text", "")
                texts.append(text if type(text) is str else str(text))
        return texts[0] if len(texts) == 1 else "".join(texts)

    @property
    def tool_inputs(self) -> list[Any]:
        """The ``input`` of each ``tool_use`` block, in order."""
        return [
            b.get("input") for b in self.content if is_mapping(b) and b.get("type") == "tool_use"
        ]

    @property
    def stop_reason(self) -> str | None:
        reason = self.message.get("stop_reason")
        return reason if isinstance(reason, str) else None


class Score(msgspec.Struct, frozen=True):
    """A scorer's verdict on one answer, normalised. (A struct: made once a line, it costs a
    fifth of a frozen dataclass.)"""

    score: float
    passed: bool
    details: dict[str, Any] | None = None


def to_score(value: Any, *, pass_threshold: float = 1.0) -> Score | None:
    """Normalise what a scorer returned (see the module docstring); ``ScorerError`` if it is
    none of the accepted shapes."""
    if value is None:
        return None
    kind = type(value)
    if kind is bool:
        return Score(1.0 if value else 0.0, value)
    if kind is float or kind is int or (kind is not dict and isinstance(value, int | float)):
        number = float(value)
        if math.isnan(number):
            raise ScorerError("the scorer returned NaN")
        return Score(number, number >= pass_threshold)
    if is_mapping(value):
        if "score" not in value:
            raise ScorerError(f"a scorer's mapping needs a 'score', got keys {sorted(value)}")
        given = value["score"]
        if type(given) is bool:  # the built-ins' verdict: no second Score made
            number, verdict = (1.0 if given else 0.0), given
        else:
            inner = to_score(given, pass_threshold=pass_threshold)
            if inner is None:
                return None
            number, verdict = inner.score, inner.passed
        passed = value.get("passed")
        if passed is not None and not isinstance(passed, bool):
            raise ScorerError(f"'passed' must be a bool, got {passed!r}")
        details = None
        if len(value) > 1:
            details = dict(value)  # one copy in C, then the two verdict keys out
            del details["score"]
            details.pop("passed", None)
        return Score(number, verdict if passed is None else passed, details or None)
    raise ScorerError(
        f"a scorer must return a bool, a number, a mapping with 'score', or None; got "
        f"{type(value).__name__}"
    )
