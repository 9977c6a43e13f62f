"""Model prices and the cost of a result's usage.

Prices are configuration, not code: the default table is the packaged ``prices.toml`` and holds
*standard* prices; users extend or override it with :func:`load_price_table`. The multipliers
below are the same for every model, so they live here once.

The cost of one succeeded result, in USD (``P`` the input and ``Pout`` the output price per
million tokens, ``g`` 1.1 for ``inference_geo == "us"`` and 1 otherwise)::

    0.5 * g * (input*P + c5m*1.25P + c1h*2P + cache_read*0.1P + output*Pout) / 1e6
        + web_searches * web_search_per_1k / 1000 + web_fetches * web_fetch_per_1k / 1000

Per-use tool fees are neither batch-discounted nor geo-priced: the API bills them per request.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterator, Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "BATCH_DISCOUNT",
    "CACHE_READ_MULTIPLIER",
    "CACHE_WRITE_1H_MULTIPLIER",
    "CACHE_WRITE_5M_MULTIPLIER",
    "US_INFERENCE_GEO",
    "US_INFERENCE_MULTIPLIER",
    "ModelPrice",
    "PriceTable",
    "load_price_table",
    "tokens_cost",
    "usage_cost",
]

BATCH_DISCOUNT: Final = 0.5
CACHE_WRITE_5M_MULTIPLIER: Final = 1.25
CACHE_WRITE_1H_MULTIPLIER: Final = 2.0
CACHE_READ_MULTIPLIER: Final = 0.1
US_INFERENCE_MULTIPLIER: Final = 1.1
US_INFERENCE_GEO: Final = "us"

_PER_MILLION: Final = 1_000_000.0
_DEFAULT_RESOURCE: Final = "prices.toml"

_Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class ModelPrice(BaseModel):
    """Standard (non-batch) prices of one model, USD per million tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: _Price
    output: _Price
    web_search_per_1k: _Price = 10.0
    """USD per 1,000 web searches."""
    web_fetch_per_1k: _Price = 0.0
    """USD per 1,000 web fetches; a fetch costs only the tokens it adds to the context."""


class PriceTable:
    """Immutable lookup from a model id (dated, aliased or family) to its :class:`ModelPrice`.

    Resolution, first hit wins: the exact key; an explicit alias; the longest key or alias that
    the id starts with at a ``-`` or ``@`` boundary, unless the next part of the id is a short
    number. That last rule lets ``claude-haiku-4-5-20251001`` and ``claude-3-7-sonnet-latest``
    find their family while ``claude-opus-4-6`` never inherits ``claude-opus-4``'s price: a new
    version is unpriced until the table knows it, never guessed.
    """

    __slots__ = ("_aliases", "_by_length", "_memo", "_prices")

    def __init__(
        self, prices: Mapping[str, ModelPrice], aliases: Mapping[str, str] | None = None
    ) -> None:
        self._prices = MappingProxyType({_norm(k): v for k, v in prices.items()})
        normalised = {_norm(a): _norm(k) for a, k in (aliases or {}).items()}
        dangling = sorted(a for a, k in normalised.items() if k not in self._prices)
        if dangling:
            raise ValueError(f"price table: aliases of unknown models: {', '.join(dangling)}")
        self._aliases = MappingProxyType(normalised)
        names = {*self._prices, *self._aliases}
        self._by_length = tuple(sorted(names, key=lambda n: (-len(n), n)))
        # Few distinct model ids occur in a job; memoising keeps lookups off the hot path.
        self._memo: dict[str, str | None] = {}

    @property
    def prices(self) -> Mapping[str, ModelPrice]:
        return self._prices

    @property
    def aliases(self) -> Mapping[str, str]:
        return self._aliases

    def resolve(self, model: str) -> str | None:
        """The table key that prices ``model``, or None when the table does not know it."""
        try:
            return self._memo[model]
        except KeyError:
            pass
        key = self._resolve(_norm(model))
        self._memo[model] = key
        return key

    def get(self, model: str) -> ModelPrice | None:
        key = self.resolve(model)
        return None if key is None else self._prices[key]

    def __getitem__(self, model: str) -> ModelPrice:
        price = self.get(model)
        if price is None:
            raise KeyError(model)
        return price

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self.resolve(model) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._prices)

    def __len__(self) -> int:
        return len(self._prices)

    def __reduce__(self) -> tuple[Any, ...]:
        # Mapping proxies do not pickle, and a tally holding this table may cross processes.
        return (PriceTable, (dict(self._prices), dict(self._aliases)))

    def __repr__(self) -> str:
        return f"PriceTable({len(self._prices)} models, {len(self._aliases)} aliases)"

    def with_overrides(self, overrides: Mapping[str, Mapping[str, Any]]) -> PriceTable:
        """A new table: each entry of ``overrides`` replaces fields of, or adds, a model."""
        return _merge(self, overrides, source="overrides")

    def _resolve(self, model: str) -> str | None:
        if model in self._prices:
            return model
        if model in self._aliases:
            return self._aliases[model]
        for name in self._by_length:
            if len(name) < len(model) and model.startswith(name):
                rest = model[len(name) :]
                if rest[0] in "-@" and not _is_version_part(rest[1:]):
                    return self._aliases.get(name, name)
        return None


def _norm(model: str) -> str:
    return model.strip().lower()


def _is_version_part(rest: str) -> bool:
    head = rest.replace("@", "-").split("-", 1)[0]
    return head.isdigit() and len(head) <= 2


def load_price_table(
    overrides: Mapping[str, Mapping[str, Any]] | str | os.PathLike[str] | None = None,
) -> PriceTable:
    """The packaged default table, merged with ``overrides``.

    ``overrides`` maps a model id to fields of :class:`ModelPrice` (and optionally
    ``aliases``: a list of other ids for it), inline or in a TOML or JSON file, whose models may
    also sit under a top-level ``models`` key as in the packaged file. A model already in the
    table keeps the fields an override leaves out; a new model needs ``input`` and ``output``.
    """
    table = _default_table()
    if overrides is None:
        return table
    if isinstance(overrides, str | os.PathLike):
        path = Path(overrides)
        return _merge(table, _models_of(_read_file(path), str(path)), source=str(path))
    return _merge(table, _models_of(overrides, "overrides"), source="overrides")


@lru_cache(maxsize=1)
def _default_table() -> PriceTable:
    raw = resources.files(__package__).joinpath(_DEFAULT_RESOURCE).read_bytes()
    document = tomllib.loads(raw.decode("utf-8"))
    return _merge(PriceTable({}), _models_of(document, _DEFAULT_RESOURCE), source=_DEFAULT_RESOURCE)


def _read_file(path: Path) -> Mapping[str, Any]:
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise ValueError(f"price table {path}: expected a .toml or .json file")
    try:
        text = path.read_text(encoding="utf-8")
        document: Any = tomllib.loads(text) if suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"price table {path}: not valid {suffix[1:].upper()}: {exc}") from exc
    if not isinstance(document, Mapping):
        raise ValueError(f"price table {path}: expected a table of models at the top level")
    return document


def _models_of(document: Mapping[str, Any], source: str) -> Mapping[str, Mapping[str, Any]]:
    models = document.get("models", document)
    if not isinstance(models, Mapping) or not all(isinstance(v, Mapping) for v in models.values()):
        raise ValueError(f"price table {source}: expected a table of models, each a table")
    return models


def _merge(
    base: PriceTable, overrides: Mapping[str, Mapping[str, Any]], *, source: str
) -> PriceTable:
    prices = dict(base.prices)
    aliases = dict(base.aliases)
    for model, fields in overrides.items():
        key = _norm(model)
        fields = dict(fields)
        extra_aliases = fields.pop("aliases", ())
        if isinstance(extra_aliases, str) or not all(isinstance(a, str) for a in extra_aliases):
            raise ValueError(f"price table {source}: model {model!r}: aliases must be a list")
        current = prices.get(key)
        try:
            merged = {**current.model_dump(), **fields} if current else fields
            prices[key] = ModelPrice.model_validate(merged)
        except ValidationError as exc:
            detail = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in exc.errors()
            )
            raise ValueError(f"price table {source}: model {model!r}: {detail}") from None
        # A model given its own price stops being an alias of another one.
        aliases.pop(key, None)
        for alias in extra_aliases:
            aliases[_norm(alias)] = key
    return PriceTable(prices, aliases)


def tokens_cost(
    price: ModelPrice,
    *,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cache_write_5m_tokens: int = 0,
    cache_write_1h_tokens: int = 0,
    cache_read_tokens: int = 0,
    web_search_requests: int = 0,
    web_fetch_requests: int = 0,
    us_inference: bool = False,
    batch: bool = True,
) -> float:
    """USD cost of token and tool counts already split by cache lifetime.

    Linear in every count, so the cost of summed counts equals the sum of the costs.
    """
    token_usd = (
        input_tokens * price.input
        + cache_write_5m_tokens * (CACHE_WRITE_5M_MULTIPLIER * price.input)
        + cache_write_1h_tokens * (CACHE_WRITE_1H_MULTIPLIER * price.input)
        + cache_read_tokens * (CACHE_READ_MULTIPLIER * price.input)
        + output_tokens * price.output
    ) / _PER_MILLION
    if batch:
        token_usd *= BATCH_DISCOUNT
    if us_inference:
        token_usd *= US_INFERENCE_MULTIPLIER
    tool_usd = (
        web_search_requests * price.web_search_per_1k + web_fetch_requests * price.web_fetch_per_1k
    ) / 1000.0
    return token_usd + tool_usd


def usage_cost(
    usage: Any,
    price: ModelPrice,
    *,
    batch: bool = True,
    inference_geo: str | None = None,
) -> float:
    """USD cost of one message's ``usage``: the wire :class:`Usage` model or its JSON mapping.

    Without a ``cache_creation`` breakdown, all of ``cache_creation_input_tokens`` is priced as
    5-minute writes (the API's default lifetime). ``inference_geo`` defaults to the one the
    usage reports; pass it when the usage predates that field but the request set it. Missing
    or null counts are 0.
    """
    breakdown = _get(usage, "cache_creation")
    if breakdown is None:
        c5m, c1h = _count(usage, "cache_creation_input_tokens"), 0
    else:
        c5m = _count(breakdown, "ephemeral_5m_input_tokens")
        c1h = _count(breakdown, "ephemeral_1h_input_tokens")
    tools = _get(usage, "server_tool_use")
    geo = inference_geo if inference_geo is not None else _get(usage, "inference_geo")
    return tokens_cost(
        price,
        input_tokens=_count(usage, "input_tokens"),
        output_tokens=_count(usage, "output_tokens"),
        cache_write_5m_tokens=c5m,
        cache_write_1h_tokens=c1h,
        cache_read_tokens=_count(usage, "cache_read_input_tokens"),
        web_search_requests=_count(tools, "web_search_requests") if tools is not None else 0,
        web_fetch_requests=_count(tools, "web_fetch_requests") if tools is not None else 0,
        us_inference=geo == US_INFERENCE_GEO,
        batch=batch,
    )


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _count(obj: Any, name: str) -> int:
    value = _get(obj, name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"usage.{name}: expected a non-negative integer, got {value!r}")
    return value
