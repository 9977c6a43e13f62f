"""Model prices and the cost of a result's usage.

Prices are data, not code: the default table is the packaged ``prices.toml``, dated, each entry
naming the page it was read from. It holds *standard* (non-batch) prices in USD per million
tokens, every one explicit: input, output, 5-minute cache write, 1-hour cache write and cache
read. No cache multiplier is assumed, because they differ by model (Opus 5.5 reads its cache at
0.05x input, Fable 5.1 at 0.025x). Users extend or override the table with
:func:`load_price_table` (``[airflow_batches] prices_path``).

A model may have prompt-size tiers (Haiku 5.5): a request whose prompt, ``input + cache writes
+ cache reads``, is over a tier's ``above_prompt_tokens`` pays that tier's prices for all of its
tokens, output included. The tier is decided per request, so a tally prices such usage per tier.

The cost of one succeeded result, in USD (``R`` the rates of its tier, ``g`` 1.1 for
``inference_geo == "us"`` and 1 otherwise)::

    0.5 * g * (input*R.input + c5m*R.cache_write_5m + c1h*R.cache_write_1h
               + cache_read*R.cache_read + output*R.output) / 1e6
        + web_searches * web_search_per_1k / 1000 + web_fetches * web_fetch_per_1k / 1000

The 0.5 is the batch discount, on every token price (cache writes and reads included). Per-use
tool fees are neither batch-discounted nor geo-priced: the API bills them per request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

from airflow_batches.api._model_table import (
    ModelTable,
    checked_entry,
    models_of,
    norm_model,
    packaged_document,
    read_table_file,
)

__all__ = [
    "BATCH_DISCOUNT",
    "RATE_FIELDS",
    "US_INFERENCE_GEO",
    "US_INFERENCE_MULTIPLIER",
    "ModelPrice",
    "PriceTable",
    "PromptTier",
    "Rates",
    "load_price_table",
    "prompt_tokens_of",
    "tokens_cost",
    "unpriced_warning",
    "usage_cost",
]

BATCH_DISCOUNT: Final = 0.5
US_INFERENCE_MULTIPLIER: Final = 1.1
US_INFERENCE_GEO: Final = "us"
RATE_FIELDS: Final = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")
"""The five token prices every entry names, USD per million tokens."""

_PER_MILLION: Final = 1_000_000.0
_DEFAULT_RESOURCE: Final = "prices.toml"

_Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Rates(BaseModel):
    """The five standard token prices of one model (or one of its tiers), USD per MTok."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: _Price
    output: _Price
    cache_write_5m: _Price
    cache_write_1h: _Price
    cache_read: _Price


class PromptTier(Rates):
    """Prices for requests whose prompt (input + cache writes + cache reads) is over a size."""

    above_prompt_tokens: Annotated[int, Field(ge=0)]


class ModelPrice(Rates):
    """Standard (non-batch) prices of one model; the base rates are its smallest tier."""

    tiers: tuple[PromptTier, ...] = ()
    """Higher prices from a prompt size up, in increasing ``above_prompt_tokens``."""
    web_search_per_1k: _Price = 10.0
    """USD per 1,000 web searches."""
    web_fetch_per_1k: _Price = 0.0
    """USD per 1,000 web fetches; a fetch costs only the tokens it adds to the context."""
    source: str | None = None
    """The page the prices were read from."""
    checked: dt.date | None = None
    """The day they were read there."""
    note: str | None = None

    @model_validator(mode="after")
    def _tiers_ascend(self) -> ModelPrice:
        bounds = [t.above_prompt_tokens for t in self.tiers]
        if bounds != sorted(set(bounds)):
            raise ValueError("tiers must have distinct, increasing above_prompt_tokens")
        return self

    def tier_index(self, prompt_tokens: int) -> int:
        """0 for the base rates, ``i + 1`` for ``tiers[i]``."""
        index = 0
        for i, tier in enumerate(self.tiers):
            if prompt_tokens > tier.above_prompt_tokens:
                index = i + 1
        return index

    def rates(self, tier: int = 0) -> Rates:
        return self if tier == 0 else self.tiers[tier - 1]

    def rates_for(self, prompt_tokens: int) -> Rates:
        """The rates a request with this prompt size pays."""
        return self.rates(self.tier_index(prompt_tokens))

    def at_tier(self, tier: int) -> ModelPrice:
        """This price with the token rates of ``tier`` (tool fees and provenance kept)."""
        if tier == 0:
            return self
        rates = self.tiers[tier - 1]
        update: dict[str, Any] = {f: getattr(rates, f) for f in RATE_FIELDS}
        return self.model_copy(update={**update, "tiers": ()})

    def tier_label(self, tier: int) -> str:
        if not self.tiers:
            return "all"
        if tier == 0:
            return f"prompt <= {self.tiers[0].above_prompt_tokens}"
        return f"prompt > {self.tiers[tier - 1].above_prompt_tokens}"


class PriceTable(ModelTable[ModelPrice]):
    """Immutable lookup from a model id (dated, aliased or family) to its :class:`ModelPrice`.

    Resolution is :class:`~airflow_batches.api._model_table.ModelIndex`'s: a dated id finds its
    family, a new version is unpriced until the table knows it, never guessed.
    """

    __slots__ = ()
    what = "price table"

    def __init__(
        self, prices: Mapping[str, ModelPrice], aliases: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(prices, aliases)

    @property
    def prices(self) -> Mapping[str, ModelPrice]:
        return self._entries

    def __getitem__(self, model: str) -> ModelPrice:
        price = self.get(model)
        if price is None:
            raise KeyError(model)
        return price

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self.resolve(model) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def _state(self) -> dict[str, Any]:
        return {"prices": dict(self._entries), "aliases": dict(self.aliases)}

    def __repr__(self) -> str:
        return f"PriceTable({len(self._entries)} models, {len(self.aliases)} aliases)"

    def digest(self) -> str:
        """A digest of every price and alias: two tables with the same digest price any usage
        alike (a cost computed with one can stand for the other's)."""
        state = {
            "prices": {m: p.model_dump(mode="json") for m, p in self._entries.items()},
            "aliases": dict(self.aliases),
        }
        encoded = json.dumps(state, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.blake2b(encoded, digest_size=16).hexdigest()

    def with_overrides(self, overrides: Mapping[str, Mapping[str, Any]]) -> PriceTable:
        """A new table: each entry of ``overrides`` replaces fields of, or adds, a model."""
        return _merge(self, overrides, source="overrides")


def load_price_table(
    overrides: Mapping[str, Mapping[str, Any]] | str | os.PathLike[str] | None = None,
) -> PriceTable:
    """The packaged default table, merged with ``overrides``.

    ``overrides`` maps a model id to fields of :class:`ModelPrice` (and optionally
    ``aliases``: a list of other ids for it), inline or in a TOML or JSON file, whose models may
    also sit under a top-level ``models`` key as in the packaged file. A model already in the
    table keeps the fields an override leaves out; a new model needs all five prices
    (:data:`RATE_FIELDS`): no multiplier is assumed for what is left out.
    """
    table = _default_table()
    if overrides is None:
        return table
    if isinstance(overrides, str | os.PathLike):
        path = Path(overrides)
        document = read_table_file(path, "price table")
        return _merge(table, models_of(document, f"price table {path}"), source=str(path))
    return _merge(table, models_of(overrides, "price table overrides"), source="overrides")


@lru_cache(maxsize=1)
def _default_table() -> PriceTable:
    document = packaged_document(_DEFAULT_RESOURCE)
    models = models_of(document, f"price table {_DEFAULT_RESOURCE}")
    return _merge(PriceTable({}), models, source=None)


def _merge(
    base: PriceTable, overrides: Mapping[str, Mapping[str, Any]], *, source: str | None
) -> PriceTable:
    prices = dict(base.prices)
    aliases = dict(base.aliases)
    where = source or _DEFAULT_RESOURCE
    for model, fields in overrides.items():
        key = norm_model(model)
        fields = dict(fields)
        extra_aliases = fields.pop("aliases", ())
        if isinstance(extra_aliases, str) or not all(isinstance(a, str) for a in extra_aliases):
            raise ValueError(f"price table {where}: model {model!r}: aliases must be a list")
        current = prices.get(key)
        if current is None:
            missing = [f for f in RATE_FIELDS if f not in fields]
            if missing:
                raise ValueError(
                    f"price table {where}: model {model!r}: {', '.join(missing)} required "
                    "(every price is explicit; no cache multiplier is assumed)"
                )
            if source is not None:
                fields.setdefault("source", source)
        merged = {**current.model_dump(), **fields} if current else fields
        prices[key] = checked_entry(ModelPrice, merged, f"price table {where}: model {model!r}")
        # A model given its own price stops being an alias of another one.
        aliases.pop(key, None)
        for alias in extra_aliases:
            aliases[norm_model(alias)] = key
    return PriceTable(prices, aliases)


def unpriced_warning(models: Sequence[str]) -> str:
    """The warning for models the price table does not know: what to do about them."""
    names = ", ".join(sorted(models))
    example = sorted(models)[0] if models else "MODEL"
    return (
        f"no price for model(s) {names}: their usage is counted but left out of every cost. "
        "To price them, add an entry to a TOML or JSON file named by [airflow_batches] "
        f"prices_path (or FetchResultsOperator(prices=...)): [models.{json.dumps(example)}] with "
        "input, output, cache_write_5m, cache_write_1h and cache_read in USD per million "
        "tokens (standard prices, from the model's page), source and checked"
    )


def tokens_cost(
    rates: Rates,
    *,
    input_tokens: float = 0,
    output_tokens: float = 0,
    cache_write_5m_tokens: float = 0,
    cache_write_1h_tokens: float = 0,
    cache_read_tokens: float = 0,
    web_search_requests: float = 0,
    web_fetch_requests: float = 0,
    us_inference: bool = False,
    batch: bool = True,
) -> float:
    """USD cost of token and tool counts at one set of rates.

    Counts may be fractional (an estimate's). Linear in every count, so the cost of summed
    counts equals the sum of the costs, as long as they were all priced at the same tier: for a
    tiered :class:`ModelPrice` pass
    ``price.rates_for(prompt_tokens)`` (or sum per tier). Tool fees come from ``rates`` when it
    is a :class:`ModelPrice`, and are otherwise 0.
    """
    token_usd = (
        input_tokens * rates.input
        + cache_write_5m_tokens * rates.cache_write_5m
        + cache_write_1h_tokens * rates.cache_write_1h
        + cache_read_tokens * rates.cache_read
        + output_tokens * rates.output
    ) / _PER_MILLION
    if batch:
        token_usd *= BATCH_DISCOUNT
    if us_inference:
        token_usd *= US_INFERENCE_MULTIPLIER
    search = getattr(rates, "web_search_per_1k", 0.0)
    fetch = getattr(rates, "web_fetch_per_1k", 0.0)
    tool_usd = (web_search_requests * search + web_fetch_requests * fetch) / 1000.0
    return token_usd + tool_usd


def prompt_tokens_of(input_tokens: int, cache_writes: int, cache_reads: int) -> int:
    """The prompt size that decides a request's tier: all of its input tokens."""
    return input_tokens + cache_writes + cache_reads


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
    or null counts are 0. The tier is chosen from this usage's own prompt size.
    """
    breakdown = _get(usage, "cache_creation")
    if breakdown is None:
        c5m, c1h = _count(usage, "cache_creation_input_tokens"), 0
    else:
        c5m = _count(breakdown, "ephemeral_5m_input_tokens")
        c1h = _count(breakdown, "ephemeral_1h_input_tokens")
    tools = _get(usage, "server_tool_use")
    geo = inference_geo if inference_geo is not None else _get(usage, "inference_geo")
    input_tokens = _count(usage, "input_tokens")
    read = _count(usage, "cache_read_input_tokens")
    tier = price.tier_index(prompt_tokens_of(input_tokens, c5m + c1h, read))
    return tokens_cost(
        price.at_tier(tier),
        input_tokens=input_tokens,
        output_tokens=_count(usage, "output_tokens"),
        cache_write_5m_tokens=c5m,
        cache_write_1h_tokens=c1h,
        cache_read_tokens=read,
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
