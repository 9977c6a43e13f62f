"""Per-model request rules: what each model refuses, from a dated data table.

The table (packaged ``model_rules.toml``) says which model refuses which rule, its maximum
output, and which tokenizer it counts with; this module holds one pure condition per rule id.
Pre-flight validation and the emulator both call :meth:`ModelRules.check`, so a request that
would come back ``errored`` a day later is refused before anything is sent, and the emulator
errors the same requests when they are sent anyway.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from airflow_batches.api._model_table import (
    ModelTable,
    checked_entry,
    models_of,
    norm_model,
    packaged_document,
    read_table_file,
)
from airflow_batches.api._request_shape import AtField, FieldPath

__all__ = [
    "RULE_IDS",
    "ModelRules",
    "ModelSpec",
    "RulesTable",
    "Tokenizer",
    "Violation",
    "load_rules_table",
]

_DEFAULT_RESOURCE: Final = "model_rules.toml"
_SAMPLING: Final = ("temperature", "top_p", "top_k")
_NEUTRAL: Final = {"temperature": 1, "top_p": 1}
"""Sampling values that change nothing, so sending them is not a non-default value."""
_HIGH_EFFORTS: Final = frozenset({"xhigh", "max"})

Finding = tuple[FieldPath, dict[str, Any]]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Tokenizer(_Model):
    bytes_per_token: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    note: str | None = None
    source: str | None = None


class ModelSpec(_Model):
    """One model's entry: limits, tokenizer and the rules it refuses, with provenance."""

    max_output_tokens: Annotated[int, Field(ge=1)] | None = None
    beta_max_output_tokens: dict[str, Annotated[int, Field(ge=1)]] = {}
    tokenizer: str | None = None
    refuses: tuple[str, ...] = ()
    source: str | None = None
    checked: dt.date | None = None
    note: str | None = None


@dataclass(frozen=True)
class Violation(AtField):
    """One rule one request breaks."""

    rule: str
    path: FieldPath
    """Where, under ``params``: ``("tool_choice", "type")``, ``("messages", 3, "role")``."""
    model: str
    message: str
    """The refusal, naming the model, without the field."""


def _forced_tool_use(params: Mapping[str, Any], removed: frozenset[str]) -> Iterator[Finding]:
    choice = params.get("tool_choice")
    if isinstance(choice, Mapping) and choice.get("type") in ("tool", "any"):
        yield ("tool_choice", "type"), {"value": choice["type"]}


def _thinking_type(params: Mapping[str, Any]) -> Any:
    thinking = params.get("thinking")
    return thinking.get("type") if isinstance(thinking, Mapping) else None


def _thinking_disabled(params: Mapping[str, Any], removed: frozenset[str]) -> Iterator[Finding]:
    if _thinking_type(params) == "disabled":
        yield ("thinking", "type"), {"value": "disabled"}


def _thinking_disabled_above_high_effort(
    params: Mapping[str, Any], removed: frozenset[str]
) -> Iterator[Finding]:
    config = params.get("output_config")
    effort = config.get("effort") if isinstance(config, Mapping) else None
    if _thinking_type(params) == "disabled" and effort in _HIGH_EFFORTS:
        yield ("thinking", "type"), {"value": effort}


def _manual_thinking(params: Mapping[str, Any], removed: frozenset[str]) -> Iterator[Finding]:
    if _thinking_type(params) == "enabled":
        yield ("thinking", "type"), {"value": "enabled"}


def _sampling_params(params: Mapping[str, Any], removed: frozenset[str]) -> Iterator[Finding]:
    for name in _SAMPLING:
        value = params.get(name)
        # A parameter the anthropic-version removed is reported by the version check.
        if value is None or name in removed:
            continue
        neutral = _NEUTRAL.get(name)
        if neutral is not None and not isinstance(value, bool) and value == neutral:
            continue
        yield (name,), {"value": value, "field": name}


def _assistant_prefill(params: Mapping[str, Any], removed: frozenset[str]) -> Iterator[Finding]:
    messages = params.get("messages")
    if isinstance(messages, list) and messages:
        last = messages[-1]
        if isinstance(last, Mapping) and last.get("role") == "assistant":
            yield ("messages", len(messages) - 1, "role"), {}


_Condition = Callable[[Mapping[str, Any], frozenset[str]], Iterator[Finding]]
_CONDITIONS: Final[dict[str, _Condition]] = {
    "forced_tool_use": _forced_tool_use,
    "thinking_disabled": _thinking_disabled,
    "thinking_disabled_above_high_effort": _thinking_disabled_above_high_effort,
    "manual_thinking": _manual_thinking,
    "sampling_params": _sampling_params,
    "assistant_prefill": _assistant_prefill,
}
RULE_IDS: Final = ("max_output", *_CONDITIONS)
"""Every rule a table may name (``max_output`` applies to each model with a maximum)."""


class RulesTable(ModelTable[ModelSpec]):
    """The loaded table: specs by model family, tokenizers, output betas, rule messages."""

    __slots__ = ("default_tokenizer", "messages", "output_betas", "tokenizers")
    what = "model rules"

    def __init__(
        self,
        *,
        models: Mapping[str, ModelSpec],
        aliases: Mapping[str, str],
        tokenizers: Mapping[str, Tokenizer],
        output_betas: Mapping[str, int],
        messages: Mapping[str, str],
        default_tokenizer: str,
    ) -> None:
        super().__init__(models, aliases)
        self.tokenizers = dict(tokenizers)
        self.output_betas = dict(output_betas)
        self.messages = dict(messages)
        self.default_tokenizer = default_tokenizer
        _check_names(self)

    @property
    def models(self) -> Mapping[str, ModelSpec]:
        return self._entries

    def tokenizer_name(self, model: str) -> str:
        spec = self.get(model)
        return (spec.tokenizer if spec else None) or self.default_tokenizer

    def tokenizer(self, model: str) -> Tokenizer:
        return self.tokenizers[self.tokenizer_name(model)]

    def output_limit(self, model: str, betas: Iterable[str] = ()) -> int | None:
        """The largest ``max_tokens`` the model accepts with these batch betas; None if the
        table does not know the model's maximum."""
        spec = self.get(model)
        if spec is None or spec.max_output_tokens is None:
            return None
        limit = spec.max_output_tokens
        for beta in betas:
            allowed = spec.beta_max_output_tokens.get(beta, self.output_betas.get(beta))
            if allowed is not None:
                limit = max(limit, allowed)
        return limit

    def _state(self) -> dict[str, Any]:
        return {
            "models": dict(self._entries),
            "aliases": dict(self.aliases),
            "tokenizers": self.tokenizers,
            "output_betas": self.output_betas,
            "messages": self.messages,
            "default_tokenizer": self.default_tokenizer,
        }


def _check_names(table: RulesTable) -> None:
    if table.default_tokenizer not in table.tokenizers:
        raise ValueError(f"model rules: unknown default tokenizer {table.default_tokenizer!r}")
    missing = sorted(set(RULE_IDS) - set(table.messages))
    if missing:
        raise ValueError(f"model rules: no message for rule(s) {', '.join(missing)}")
    for name, spec in table.models.items():
        unknown = sorted(set(spec.refuses) - set(_CONDITIONS))
        if unknown:
            raise ValueError(
                f"model rules: model {name!r}: unknown rule(s) {', '.join(unknown)} "
                f"(known: {', '.join(_CONDITIONS)})"
            )
        if spec.tokenizer is not None and spec.tokenizer not in table.tokenizers:
            raise ValueError(f"model rules: model {name!r}: unknown tokenizer {spec.tokenizer!r}")


def load_rules_table(overrides: str | os.PathLike[str] | None = None) -> RulesTable:
    """The packaged table, with the models (and tokenizers, betas) of a TOML or JSON file
    of the same shape merged over it: an entry given there replaces fields of the packaged one."""
    base = _default_document()
    if overrides is None:
        return _default_table()
    path = Path(overrides)
    extra = read_table_file(path, "model rules")
    return _table_of(_merge_documents(base, extra), str(path))


@lru_cache(maxsize=1)
def _default_document() -> dict[str, Any]:
    return packaged_document(_DEFAULT_RESOURCE)


@lru_cache(maxsize=1)
def _default_table() -> RulesTable:
    return _table_of(_default_document(), _DEFAULT_RESOURCE)


def _merge_documents(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) if isinstance(v, Mapping) else v for k, v in base.items()}
    for section in ("tokenizers", "output_betas", "rules", "defaults"):
        if isinstance(extra.get(section), Mapping):
            out.setdefault(section, {}).update(extra[section])
    models = out.setdefault("models", {})
    for name, fields in models_of({"models": extra.get("models", {})}, "model rules").items():
        key = norm_model(name)
        models[key] = {**models.get(key, {}), **fields}
    return out


def _table_of(document: Mapping[str, Any], where: str) -> RulesTable:
    specs: dict[str, ModelSpec] = {}
    aliases: dict[str, str] = {}
    for name, fields in models_of(document, f"model rules {where}").items():
        fields = dict(fields)
        for alias in fields.pop("aliases", ()):
            aliases[alias] = name
        specs[name] = checked_entry(ModelSpec, fields, f"model rules {where}: model {name!r}")
    try:
        tokenizers = {
            k: Tokenizer.model_validate(v) for k, v in dict(document.get("tokenizers", {})).items()
        }
    except ValidationError as exc:
        raise ValueError(f"model rules {where}: tokenizers: {exc}") from None
    rules = dict(document.get("rules", {}))
    return RulesTable(
        models=specs,
        aliases=aliases,
        tokenizers=tokenizers,
        output_betas={k: int(v) for k, v in dict(document.get("output_betas", {})).items()},
        messages={k: str(dict(v).get("message", "")) for k, v in rules.items()},
        default_tokenizer=str(dict(document.get("defaults", {})).get("tokenizer", "")),
    )


class ModelRules:
    """Checks params against the table, for one batch's betas; pure and thread-safe.

    ``disabled`` switches rules off for the day the API changes before the table does: a rule
    id (``"forced_tool_use"``) for every model, or ``"model:rule"`` for one model family.
    ``removed_params`` are parameters the anthropic-version no longer accepts (reported by
    the version check, so not again here).
    """

    def __init__(
        self,
        table: RulesTable | None = None,
        *,
        betas: Sequence[str] = (),
        disabled: Iterable[str] = (),
        removed_params: Iterable[str] = (),
    ) -> None:
        self.table = table if table is not None else load_rules_table()
        self.betas = tuple(betas)
        self.removed = frozenset(removed_params)
        self._off_everywhere: set[str] = set()
        self._off_for: set[tuple[str, str]] = set()
        for entry in disabled:
            model, sep, rule = entry.rpartition(":")
            if rule not in RULE_IDS:
                raise ValueError(
                    f"disabled model rule {entry!r}: unknown rule {rule!r} "
                    f"(known: {', '.join(RULE_IDS)}; 'model:rule' for one model)"
                )
            if sep:
                key = self.table.resolve(model) or norm_model(model)
                self._off_for.add((key, rule))
            else:
                self._off_everywhere.add(rule)

    def _on(self, key: str, rule: str) -> bool:
        return rule not in self._off_everywhere and (key, rule) not in self._off_for

    def output_limit(self, model: str) -> int | None:
        key = self.table.resolve(model)
        if key is None or not self._on(key, "max_output"):
            return None
        return self.table.output_limit(key, self.betas)

    def check(self, params: Mapping[str, Any]) -> list[Violation]:
        """Every rule these params break; [] for a model the table does not know."""
        model = params.get("model")
        if not isinstance(model, str):
            return []
        key = self.table.resolve(model)
        if key is None:
            return []
        spec = self.table.models[key]
        out: list[Violation] = []
        limit = self.output_limit(model)
        value = params.get("max_tokens")
        if isinstance(value, bool) or not isinstance(value, int):
            value = None  # the generic checks report a max_tokens that is not an integer
        if limit is not None and value is not None and value > limit:
            text = self._text("max_output", model=model, value=value, limit=limit)
            out.append(Violation("max_output", ("max_tokens",), model, text))
        for rule in spec.refuses:
            if not self._on(key, rule):
                continue
            for path, values in _CONDITIONS[rule](params, self.removed):
                out.append(Violation(rule, path, model, self._text(rule, model=model, **values)))
        return out

    def _text(self, rule: str, **values: Any) -> str:
        return self.table.messages[rule].format(**values)
