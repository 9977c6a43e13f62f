"""A per-model data table: which entry a model id belongs to, the lookups, the packaged file.

The price table (``_pricing``) and the model-rules table (``_rules``) are both keyed by model
family (``claude-opus-5-5``) and must answer for dated ids (``claude-haiku-4-5-20251001``),
provider forms (``claude-opus-4-1@20250805``) and suffixed aliases
(``claude-3-7-sonnet-latest``), without ever letting a new version inherit an old one's entry.
One resolver (``ModelIndex``) and one base (``ModelTable``: resolve, get, pickling) serve both,
with the reading of their files and the checking of their entries.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ValidationError

__all__ = [
    "ModelIndex",
    "ModelTable",
    "checked_entry",
    "models_of",
    "norm_model",
    "packaged_document",
    "read_table_file",
]

EntryT = TypeVar("EntryT")
ModelT = TypeVar("ModelT", bound=BaseModel)


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


class ModelTable(Generic[EntryT]):
    """Entries keyed by model family, found for any id of the model (``ModelIndex``).

    Immutable. Pickles through its constructor's keyword arguments (``_state``): mapping
    proxies do not pickle, and a table crosses processes (a tally holding prices, a rules check
    in a worker).
    """

    __slots__ = ("_entries", "_index")
    what: ClassVar[str] = "model table"
    """The table's name in errors: ``price table``, ``model rules``."""

    def __init__(
        self, entries: Mapping[str, EntryT], aliases: Mapping[str, str] | None = None
    ) -> None:
        self._entries: Mapping[str, EntryT] = MappingProxyType(
            {norm_model(k): v for k, v in entries.items()}
        )
        try:
            self._index = ModelIndex(self._entries, aliases)
        except ValueError as exc:
            raise ValueError(f"{self.what}: {exc}") from None

    @property
    def aliases(self) -> Mapping[str, str]:
        return self._index.aliases

    def resolve(self, model: str) -> str | None:
        """The key of the entry for ``model``, or None when the table does not know it."""
        return self._index.resolve(model)

    def get(self, model: str) -> EntryT | None:
        """The entry for ``model``, or None when the table does not know it."""
        key = self.resolve(model)
        return None if key is None else self._entries[key]

    def _state(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this table."""
        raise NotImplementedError

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self._state()))


def _rebuild(cls: type[ModelTable[Any]], state: dict[str, Any]) -> ModelTable[Any]:
    return cls(**state)


def packaged_document(name: str) -> dict[str, Any]:
    """A TOML file packaged beside this module (``prices.toml``, ``model_rules.toml``)."""
    raw = resources.files(__package__).joinpath(name).read_bytes()
    return tomllib.loads(raw.decode("utf-8"))


def checked_entry(model: type[ModelT], fields: Mapping[str, Any], where: str) -> ModelT:
    """One entry of a table, validated; else a ValueError naming ``where`` (the table, its
    file and the model) and each fault on one line: ``field: message; ...``."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        detail = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(f"{where}: {detail}") from None


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
