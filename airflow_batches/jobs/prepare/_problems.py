"""What pre-flight reports: one ``Problem`` per fault, gathered into one bounded error.

Input is hostile by assumption, so everything quoted from it is cut: a value to about 60
characters, a custom_id to 64, a field path to 120, one problem to 300, the whole error to
about 2,000 characters (the first problems, then "... and N more"). Lone surrogates are shown
escaped, so a message can always be logged and written as UTF-8.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow_batches.api import BatchesError
from airflow_batches.api._format import shorten

MESSAGE_BUDGET = 2000
"""Upper bound on the length of a ``RequestValidationError`` message."""
CUSTOM_ID_CHARS = 64
FIELD_CHARS = 120
PROBLEM_CHARS = 300


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one request."""

    location: str
    """``line 12`` for a JSONL input (raw line numbers), ``request 3`` (0-based) for a list."""
    custom_id: str | None
    field: str
    message: str

    def __post_init__(self) -> None:
        if self.custom_id is not None:
            object.__setattr__(self, "custom_id", shorten(self.custom_id, CUSTOM_ID_CHARS))
        object.__setattr__(self, "field", shorten(self.field, FIELD_CHARS))
        object.__setattr__(self, "message", shorten(self.message, PROBLEM_CHARS))

    def __str__(self) -> str:
        who = f"{self.location} (custom_id {self.custom_id!r})" if self.custom_id else self.location
        return f"{who}: {self.field}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "custom_id": self.custom_id,
            "field": self.field,
            "message": self.message,
        }


class RequestValidationError(BatchesError):
    """Requests failed pre-flight validation; nothing was sent."""

    def __init__(
        self,
        message: str,
        *,
        problems: list[dict[str, Any]] | None = None,
        total: int = 0,
    ) -> None:
        super().__init__(message)
        self.problems = problems or []
        self.total = total

    def _state(self) -> dict[str, Any]:
        return {"message": self.message, "problems": self.problems, "total": self.total}

    @classmethod
    def from_problems(
        cls,
        problems: list[Problem],
        total: int,
        *,
        anthropic_version: str,
        budget: int = MESSAGE_BUDGET,
    ) -> RequestValidationError:
        """One error listing the first problems that fit ``budget`` characters."""
        text = (
            f"{total} invalid request(s) (validated for anthropic-version "
            f"{anthropic_version}); nothing was submitted:"
        )
        reserve = len("\n  ... and  more") + len(str(total))
        shown = 0
        for problem in problems:
            line = f"\n  {problem}"
            if len(text) + len(line) + reserve > budget:
                break
            text += line
            shown += 1
        if total > shown:
            text += f"\n  ... and {total - shown} more"
        return cls(text, problems=[p.to_dict() for p in problems], total=total)
