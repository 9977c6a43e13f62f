"""Results to rows: one small typed record per published result line, in constant memory.

A published line is the API's result line (``custom_id``, ``result``) with what the fetch
joined onto it (``metadata``; ``matrix``: the model label and the request's own custom_id;
``cached_from``). :class:`ResultRow` keeps what a downstream task usually wants of it; the
line itself is one JSON object, read and dropped one at a time.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_batches.jobs._store import StoragePath

__all__ = ["ResultRow", "rows_from_files", "rows_from_lines"]


@dataclass(frozen=True, slots=True)
class ResultRow:
    """One request's final result, as a row.

    ``text`` is set for a ``succeeded`` result (its text blocks joined; thinking and tool
    blocks left out, so it may be empty), ``error`` for an ``errored`` one; ``canceled`` and
    ``expired`` results carry neither.
    """

    custom_id: str
    """The request's custom_id (in a matrix job, its own, without the ``m{i}_`` prefix)."""
    type: str
    """``succeeded``, ``errored``, ``canceled`` or ``expired``."""
    text: str | None = None
    """The answer's text (``succeeded`` only)."""
    metadata: Any = None
    """The request's ``metadata``, when it had some."""
    model: str | None = None
    """The model label of a matrix job's line; None for a job of one model."""
    error: str | None = None
    """``"<error type>: <message>"`` of an ``errored`` result."""
    stop_reason: str | None = None
    """Why the answer stopped (``end_turn``, ``max_tokens``, ...; ``succeeded`` only)."""
    line_custom_id: str = ""
    """The custom_id as published (a matrix job's carries the ``m{i}_`` prefix)."""

    @property
    def ok(self) -> bool:
        return self.type == "succeeded"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def row_of(line: Mapping[str, Any]) -> ResultRow:
    """The row of one published line (a parsed JSON object)."""
    result = _mapping(line.get("result"))
    kind = str(result.get("type", ""))
    published = str(line.get("custom_id", ""))
    matrix = _mapping(line.get("matrix"))
    text = stop = error = None
    if kind == "succeeded":
        message = _mapping(result.get("message"))
        blocks = message.get("content")
        text = "".join(
            str(b.get("text", ""))
            for b in (blocks if isinstance(blocks, list) else ())
            if isinstance(b, Mapping) and b.get("type") == "text"
        )
        reason = message.get("stop_reason")
        stop = reason if isinstance(reason, str) else None
    elif kind == "errored":
        detail = _mapping(_mapping(result.get("error")).get("error"))
        error = f"{detail.get('type', 'error')}: {detail.get('message', '')}"
    label = matrix.get("model")
    return ResultRow(
        custom_id=str(matrix.get("custom_id") or published),
        type=kind,
        text=text,
        metadata=line.get("metadata"),
        model=label if isinstance(label, str) else None,
        error=error,
        stop_reason=stop,
        line_custom_id=published,
    )


def rows_from_lines(lines: Iterable[bytes | str | Mapping[str, Any]]) -> Iterator[ResultRow]:
    """Rows of published lines (JSON text, or already parsed); blank lines are skipped."""
    for number, line in enumerate(lines, 1):
        if isinstance(line, Mapping):
            yield row_of(line)
            continue
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"result line {number} is not JSON: {exc}") from None
        if not isinstance(value, Mapping):
            raise ValueError(f"result line {number} is not a JSON object")
        yield row_of(value)


def rows_from_files(paths: Iterable[StoragePath]) -> Iterator[ResultRow]:
    """Rows of every line of the given results files, one file after the other."""
    for path in paths:
        with path.open("rb") as stream:
            try:
                yield from rows_from_lines(stream)
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from None
