"""The ``anthropic-beta`` values the emulator accepts: dated data (``betas.toml``), not code.

Every value the pinned SDK's ``AnthropicBetaParam`` names, plus newer ones the platform docs
name, each with its source and what the emulator does with it (``honoured``, ``ignored``,
``elsewhere``: see the file's header). The config's ``betas`` list defaults to all of them; a
value outside that list is the API's 400.

The betas that change what a request may contain and that the emulator honours are named here
too; :mod:`airflow_batches.emulator.validation` checks what they allow.
"""

from __future__ import annotations

import datetime
import tomllib
from functools import lru_cache
from importlib import resources
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "BINDING_BETA",
    "DISPLAY_UPDATES_BETA",
    "Beta",
    "BetaSource",
    "BetaTable",
    "known_betas",
    "load_beta_table",
]

_RESOURCE = "betas.toml"

BINDING_BETA = "thinking-binding-controls-2026-08-01"
"""Lets ``thinking`` carry ``block_binding``."""
DISPLAY_UPDATES_BETA = "thinking-display-updates-2026-08-18"
"""Lets ``thinking.display`` be ``"updates"``."""

Handling = Literal["honoured", "ignored", "elsewhere"]
BetaName = Annotated[str, Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=100)]


class BetaSource(BaseModel):
    """Where a value was read: a page (or a package and a file in it), and when."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    checked: datetime.date
    note: str
    file: str | None = None


class Beta(BaseModel):
    """One accepted value: its source (a key of the table's ``sources``) and its handling."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    emulator: Handling
    note: str = Field(min_length=1)


class BetaTable(BaseModel):
    """The whole file: sources by key, betas by name (in the file's order)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sources: dict[str, BetaSource]
    betas: dict[BetaName, Beta]

    @model_validator(mode="after")
    def _sources_exist(self) -> BetaTable:
        for name, beta in self.betas.items():
            if beta.source not in self.sources:
                raise ValueError(
                    f"betas.{name}.source: {beta.source!r} is not a key of [sources] "
                    f"({', '.join(sorted(self.sources))})"
                )
        return self

    def handled(self, handling: Handling) -> tuple[str, ...]:
        """The names with this handling, in the file's order."""
        return tuple(name for name, beta in self.betas.items() if beta.emulator == handling)

    def source_of(self, name: str) -> BetaSource:
        return self.sources[self.betas[name].source]


def parse_beta_table(raw: bytes, origin: str) -> BetaTable:
    """A table from TOML bytes; a bad entry is a ValueError naming ``origin`` and the field."""
    try:
        return BetaTable.model_validate(tomllib.loads(raw.decode("utf-8")))
    except ValidationError as exc:
        problems = "; ".join(_problem(error["loc"], error["msg"]) for error in exc.errors())
        raise ValueError(f"{origin}: {problems}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{origin}: {exc}") from exc


def _problem(loc: tuple[int | str, ...], message: str) -> str:
    where = ".".join(str(part) for part in loc)
    message = message.removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


@lru_cache(maxsize=1)
def load_beta_table() -> BetaTable:
    """The packaged table (read once)."""
    raw = resources.files(__package__).joinpath(_RESOURCE).read_bytes()
    return parse_beta_table(raw, f"{__package__}/{_RESOURCE}")


def known_betas() -> tuple[str, ...]:
    """Every value of the packaged table, in its order: the config's default ``betas``."""
    return tuple(load_beta_table().betas)
