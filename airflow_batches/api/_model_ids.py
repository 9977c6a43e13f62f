"""Which entry of a per-model data table a model id belongs to.

The price table and the model-rules table are both keyed by model family (``claude-opus-5-5``)
and must answer for dated ids (``claude-haiku-4-5-20251001``), provider forms
(``claude-opus-4-1@20250805``) and suffixed aliases (``claude-3-7-sonnet-latest``), without
ever letting a new version inherit an old one's entry. One resolver serves both.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

__all__ = ["ModelIndex", "entry_errors", "models_of", "norm_model", "read_table_file"]


def norm_model(model: str) -> str:
    return model.strip().lower()


def _is_version_part(rest: str) -> bool:
    head = rest.replace("@", "-").split("-", 1)[0]
    return head.isdigit() and len(head) <= 2


class ModelIndex:
    """Resolution of a model id to a table key, first hit wins.

    The exact key; an explicit alias; the longest key or alias that the id starts with at a
    ``-`` or ``@`` boundary, unless the next part of the id is a short number. That last rule
    lets ``claude-haiku-4-5-20251001`` find ``claude-haiku-4-5`` while ``claude-opus-4-6`` never
    resolves to ``claude-opus-4``: a new version is unknown until the table knows it.
    """

    __slots__ = ("_aliases", "_by_length", "_keys", "_memo")

    def __init__(self, keys: Iterable[str], aliases: Mapping[str, str] | None = None) -> None:
        self._keys = frozenset(norm_model(k) for k in keys)
        normalised = {norm_model(a): norm_model(k) for a, k in (aliases or {}).items()}
        dangling = sorted(a for a, k in normalised.items() if k not in self._keys)
        if dangling:
            raise ValueError(f"aliases of unknown models: {', '.join(dangling)}")
        self._aliases = MappingProxyType(normalised)
        names = {*self._keys, *self._aliases}
        self._by_length = tuple(sorted(names, key=lambda n: (-len(n), n)))
        # Few distinct model ids occur in a job; memoising keeps lookups off the hot path.
        self._memo: dict[str, str | None] = {}

    @property
    def aliases(self) -> Mapping[str, str]:
        return self._aliases

    def resolve(self, model: str) -> str | None:
        """The table key for ``model``, or None when the table does not know it."""
        try:
            return self._memo[model]
        except KeyError:
            pass
        key = self._resolve(norm_model(model))
        if len(self._memo) < 10_000:
            self._memo[model] = key
        return key

    def _resolve(self, model: str) -> str | None:
        if model in self._keys:
            return model
        if model in self._aliases:
            return self._aliases[model]
        for name in self._by_length:
            if len(name) < len(model) and model.startswith(name):
                rest = model[len(name) :]
                if rest[0] in "-@" and not _is_version_part(rest[1:]):
                    return self._aliases.get(name, name)
        return None


def read_table_file(path: Path, what: str) -> Mapping[str, Any]:
    """A TOML or JSON document whose top level is a table, or a ValueError naming ``path``."""
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise ValueError(f"{what} {path}: expected a .toml or .json file")
    try:
        text = path.read_text(encoding="utf-8")
        document: Any = tomllib.loads(text) if suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{what} {path}: not valid {suffix[1:].upper()}: {exc}") from exc
    if not isinstance(document, Mapping):
        raise ValueError(f"{what} {path}: expected a table of models at the top level")
    return document


def models_of(document: Mapping[str, Any], what: str) -> Mapping[str, Mapping[str, Any]]:
    """The per-model entries of a document: under ``models``, or the document itself."""
    models = document.get("models", document)
    if not isinstance(models, Mapping) or not all(isinstance(v, Mapping) for v in models.values()):
        raise ValueError(f"{what}: expected a table of models, each a table")
    return models


def entry_errors(exc: ValidationError) -> str:
    """A table entry's validation errors on one line: ``field: message; ...``."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in exc.errors())
