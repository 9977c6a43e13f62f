"""Settings of the emulator: one pydantic model, loadable from TOML or JSON, overridable."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from airflow_batches.api._models import MAX_BATCH_BYTES, MAX_REQUESTS_PER_BATCH
from airflow_batches.emulator.betas import known_betas

Endpoint = Literal["create", "retrieve", "list", "cancel", "delete", "results"]
ENDPOINTS: tuple[Endpoint, ...] = ("create", "retrieve", "list", "cancel", "delete", "results")

ResultErrorType = Literal[
    "invalid_request_error",
    "authentication_error",
    "billing_error",
    "permission_error",
    "not_found_error",
    "rate_limit_error",
    "timeout_error",
    "api_error",
    "overloaded_error",
]
"""The error types the official SDK's union knows; an errored line must use one of them."""

Rate = Annotated[float, Field(ge=0.0, le=1.0)]

DEFAULT_MODELS = (
    # What SDK 2.14 names, then the older models of the price table.
    "claude-fable-5-2",
    "claude-mythos-5-2",
    "claude-haiku-5-5",
    "claude-sonnet-5-5",
    "claude-fable-5-1",
    "claude-opus-5-5",
    "claude-mythos-5-1",
    "claude-sonnet-5",
    "claude-fable-5",
    "claude-mythos-5",
    "claude-opus-5",
    "claude-opus-4-8",
    "claude-opus-4-7",
    "claude-mythos-preview",
    "claude-opus-4-6",
    "claude-sonnet-4-6",
    "claude-haiku-4-5",
    "claude-haiku-4-5-20251001",
    "claude-opus-4-5",
    "claude-opus-4-5-20251101",
    "claude-sonnet-4-5",
    "claude-sonnet-4-5-20250929",
    "claude-opus-4-1",
    "claude-opus-4-1-20250805",
    "claude-opus-4-0",
    "claude-opus-4-20250514",
    "claude-sonnet-4-0",
    "claude-sonnet-4-20250514",
    "claude-3-7-sonnet-latest",
    "claude-3-7-sonnet-20250219",
    "claude-3-5-sonnet-latest",
    "claude-3-5-sonnet-20241022",
    "claude-3-5-sonnet-20240620",
    "claude-3-5-haiku-latest",
    "claude-3-5-haiku-20241022",
    "claude-3-opus-latest",
    "claude-3-opus-20240229",
    "claude-3-haiku-20240307",
)

DEFAULT_BETAS = known_betas()
"""``anthropic-beta`` values accepted by default: every entry of ``betas.toml`` (the pinned
SDK's list and the newer values the platform docs name); any other is a 400, as on the API."""


class FaultRates(BaseModel):
    """Faults injected into one endpoint. Each rate is the chance per call, drawn in order.

    ``drop`` closes the connection before the request is handled; ``drop_after`` handles it
    (a create does create the batch) and then loses the answer, the nastiest case for a client;
    ``cut`` handles it and sends the real answer, but closes the connection part-way through
    its body (a results download cut mid-stream).
    """

    model_config = ConfigDict(extra="forbid")

    rate_429: Rate = 0.0
    rate_500: Rate = 0.0
    rate_529: Rate = 0.0
    rate_drop: Rate = 0.0
    rate_drop_after: Rate = 0.0
    rate_slow: Rate = 0.0
    rate_cut: Rate = 0.0
    cut_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    """How much of a cut answer's body is sent before the connection is closed."""
    slow_seconds: Annotated[float, Field(ge=0.0)] = 2.0
    """Real seconds a slow answer is held back."""
    retry_after: Annotated[float, Field(ge=0.0)] = 1.0
    """Seconds announced in ``retry-after`` on a 429 (and a 529)."""
    max_count: Annotated[int, Field(ge=0)] | None = None
    """Stop injecting into this endpoint after this many faults (``None``: never stop)."""


class EmulatorConfig(BaseModel):
    """Every setting of the emulator; all but host, port and data_dir can change at run time."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8089
    data_dir: Path | None = None
    """Where batches, bodies and results live; ``None``: a new temporary directory."""
    allowed_hosts: list[str] = Field(default_factory=list)
    """More ``Host`` names the emulator answers, API and admin view (a docker-compose service
    name, say), besides loopback names and the address a request arrives on; any other name
    is refused (DNS rebinding). Set at start only."""
    admin_hosts: list[str] = Field(default_factory=list)
    """The older name of ``allowed_hosts`` (when only the admin view checked ``Host``): both
    lists are let in, everywhere. Set at start only."""

    workspaces: dict[str, list[str]] = Field(default_factory=lambda: {"default": ["emulator-key"]})
    """Workspace name -> its API keys. ``anthropic-workspace-id`` selects by name when a key
    belongs to several workspaces."""
    api_versions: list[str] = Field(default_factory=lambda: ["2023-06-01", "2026-10-21"])
    betas: list[str] = Field(default_factory=lambda: list(DEFAULT_BETAS))
    """Accepted ``anthropic-beta`` values; any other is a 400. Default: all of ``betas.toml``."""
    models: list[str] = Field(default_factory=lambda: list(DEFAULT_MODELS))
    """Known models, as exact names or ``fnmatch`` patterns; any other model ends errored with
    ``not_found_error``."""

    latency: Annotated[float, Field(ge=0.0)] = 0.0
    """Real seconds each request takes to process (per worker)."""
    workers: Annotated[int, Field(ge=1, le=256)] = 4
    time_scale: Annotated[float, Field(gt=0.0)] = 1.0
    """Emulated seconds per real second: 3600 makes the 24 h expiry pass in 24 s."""
    paused: bool = False
    """Workers take no new request while paused (batches stay ``in_progress``)."""
    seed: int = 0

    max_requests_per_batch: Annotated[int, Field(ge=1)] = MAX_REQUESTS_PER_BATCH
    max_body_bytes: Annotated[int, Field(ge=1)] = MAX_BATCH_BYTES
    max_queued_requests: Annotated[int, Field(ge=1)] = 500_000
    """Requests waiting to be processed, all workspaces together; a create beyond it is a 429."""
    requests_per_minute: Annotated[int, Field(ge=1)] | None = None
    """API calls per key per (real) minute, all batch endpoints together; beyond it a 429 with
    ``retry-after``. ``None``: no limit."""
    max_output_tokens: Annotated[int, Field(ge=1)] = 128_000
    """Largest ``max_tokens`` accepted for a model the model-rules table does not know;
    300,000 with the ``output-300k-2026-03-24`` beta. Known models get their own maximum."""
    model_rules: bool = True
    """Enforce the model-rules table (``airflow_batches/api/model_rules.toml``): a request a
    model refuses (forced tool use on Opus 5.5, ...) ends ``errored`` with
    ``invalid_request_error``, as on the real API."""
    expiry_hours: Annotated[float, Field(gt=0.0)] = 24.0
    retention_days: Annotated[float, Field(gt=0.0)] = 29.0
    cache_min_tokens: Annotated[int, Field(ge=0)] = 1024
    """A prompt prefix shorter than this is not cached (as on the real API)."""

    faults: dict[Endpoint | Literal["*"], FaultRates] = Field(default_factory=dict)
    """Faults per endpoint; ``"*"`` applies to every endpoint without its own entry."""
    result_errors: dict[ResultErrorType, Rate] = Field(default_factory=dict)
    """Chance that a request ends ``errored`` with this error type, decided per request."""
    cancel_seconds: Annotated[float, Field(ge=0.0)] = 0.0
    """Emulated seconds a cancel takes: the batch stays ``canceling`` at least this long."""
    not_found_after_create: Annotated[float, Field(ge=0.0)] = 0.0
    """Emulated seconds after creation during which retrieve/results answer 404 (the
    eventual-consistency glitch seen on the real API); 0 disables it."""

    delete_unfinished: Literal["invalid_request", "conflict", "allow"] = "invalid_request"
    """DELETE of a batch that has not ended: 400, 409, or delete it (canceling its work)."""
    cancel_ended: Literal["invalid_request", "conflict", "ok"] = "invalid_request"
    """Cancel of an ended batch: 400, 409, or 200 with the batch unchanged."""
    results_unfinished: Literal["invalid_request", "conflict", "not_found"] = "invalid_request"
    """Results of a batch that has not ended: 400, 409 or 404."""
    results_archived: Literal["not_found", "invalid_request", "conflict"] = "not_found"
    """Results of a batch older than ``retention_days``: 404, 400 or 409."""
    too_many_requests: Literal["invalid_request_error", "request_too_large"] = (
        "invalid_request_error"
    )
    """Error for more than ``max_requests_per_batch`` items: 400, or 413 request_too_large."""

    responder: str = "airflow_batches.emulator.responders:default_responder"
    """``module:callable`` producing each succeeded Message (see responders.py). Set at start
    only (CLI or config file): the admin view never imports code it is sent."""
    responder_options: dict[str, Any] = Field(default_factory=dict)
    """Settings of the responder's own, handed to it as ``ResponderContext.options`` (the
    eval responder's ``error_rates``, for one)."""

    @field_validator("workspaces")
    @classmethod
    def _workspaces_have_keys(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        if not value:
            raise ValueError("at least one workspace is needed")
        for name, keys in value.items():
            if not keys or not all(isinstance(k, str) and k for k in keys):
                raise ValueError(f"workspace {name!r} needs at least one non-empty key")
        return value

    @model_validator(mode="after")
    def _responder_path(self) -> EmulatorConfig:
        module, sep, attr = self.responder.partition(":")
        if not sep or not module or not attr:
            raise ValueError("responder must be 'module:callable'")
        return self

    @property
    def default_key(self) -> str:
        """The first key of workspace ``default`` (or of the first workspace)."""
        keys = self.workspaces.get("default") or next(iter(self.workspaces.values()))
        return keys[0]

    def faults_for(self, endpoint: Endpoint) -> FaultRates | None:
        return self.faults.get(endpoint) or self.faults.get("*")

    def updated(self, overrides: Mapping[str, Any]) -> EmulatorConfig:
        """A new config with ``overrides`` merged in.

        Nested mappings merge key by key; an empty mapping replaces (``faults={}`` clears).
        """
        merged = deep_merge(self.model_dump(mode="json"), overrides)
        return EmulatorConfig.model_validate(merged)

    @classmethod
    def load(cls, path: str | Path, overrides: Mapping[str, Any] | None = None) -> EmulatorConfig:
        """Read a ``.toml`` or ``.json`` file, then apply ``overrides``."""
        path = Path(path)
        raw = path.read_bytes()
        is_json = path.suffix.lower() == ".json"
        data: dict[str, Any] = json.loads(raw) if is_json else tomllib.loads(raw.decode())
        if overrides:
            data = deep_merge(data, overrides)
        return cls.model_validate(data)


RUNTIME_FIXED = frozenset({"host", "port", "data_dir"})


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        current = out.get(key)
        if isinstance(value, Mapping) and value and isinstance(current, Mapping):
            out[key] = deep_merge(current, value)
        else:
            out[key] = value
    return out
