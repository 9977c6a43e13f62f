"""Asynchronous validation of one request's params, as the API does after a batch is created,
and the API's words for a request's shape.

A problem here never fails the create call: the request ends ``errored`` with the error this
function returns, and the rest of the batch is processed as usual. The shape itself (required
members, types, roles, no streaming, no SDK options, parameters a version removed) is the one
``api._request_shape`` defines for every caller; ``api_message`` words its faults as the API
does, here and in the create call's 400 (``intake``). What only the API knows is judged here:
each model's output limit, the thinking betas, the model rules, the user profile, which models
exist.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from fnmatch import fnmatchcase
from typing import Any

from airflow_batches.api._request_shape import Fault, FieldPath, api_path, params_faults
from airflow_batches.api._rules import ModelRules, load_rules_table
from airflow_batches.emulator.betas import BINDING_BETA, DISPLAY_UPDATES_BETA


class RequestError(Exception):
    """Turns a request into an ``errored`` result line (responders may raise it too)."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


def _invalid(message: str) -> RequestError:
    return RequestError("invalid_request_error", message)


def api_message(
    fault: Fault,
    *,
    at: FieldPath = (),
    anthropic_version: str = "",
    shown: Callable[[str], str] = str,
) -> str:
    """``field: text`` for a shape fault, in the API's (pydantic's) words; ``at`` prefixes the
    field, ``shown`` turns text from the input (keys, values) back into what the client sent."""
    expected = fault.expected
    match fault.kind:
        case "missing":
            text = "Field required"
        case "null" | "type" | "choice":
            text = _should_be(expected)
        case "empty" if expected == "list":
            text = "List should have at least 1 item after validation"
        case "empty":
            text = "String should have at least 1 character"
        case "too_small":
            text = f"Input should be greater than or equal to {expected}"
        case "pattern":
            text = f"String should match pattern '{expected}' (got {shown(str(fault.value))!r})"
        case "stream":
            text = "streaming is not supported in the Message Batches API"
        case "removed":
            text = (
                f"Extra inputs are not permitted (`{fault.path[-1]}` is not a parameter under "
                f"anthropic-version {anthropic_version})"
            )
        case _:  # unknown, sdk_only
            text = "Extra inputs are not permitted"
    return f"{shown(api_path((*at, *fault.path)))}: {text}"


def _should_be(expected: str) -> str:
    if expected == "object":
        return "Input should be an object"
    if expected.startswith("'"):  # a choice: 'user' or 'assistant'
        return f"Input should be {expected}"
    return f"Input should be a valid {expected}"


def model_known(model: str, patterns: Sequence[str]) -> bool:
    return _known_models(tuple(patterns))(model)


@functools.lru_cache(maxsize=8)
def _known_models(patterns: tuple[str, ...]) -> Callable[[str], bool]:
    exact = frozenset(p for p in patterns if not any(c in p for c in "*?["))
    wild = [p for p in patterns if p not in exact]

    @functools.lru_cache(maxsize=1024)
    def known(model: str) -> bool:
        return model in exact or any(fnmatchcase(model, p) for p in wild)

    return known


def validate_params(
    params: Any,
    *,
    api_version: str,
    betas: Sequence[str],
    user_profile_id: str | None,
    models: Sequence[str],
    max_output_tokens: int,
    rules: ModelRules | None = None,
) -> RequestError | None:
    """The first problem of ``params``, or None when the request can be answered.

    With ``rules``, a model the rules table knows gets its own maximum output and refusals
    (the same table pre-flight validation checks against).
    """
    if not isinstance(params, dict):
        return _invalid("params: Input should be an object")
    faults = params_faults(params, anthropic_version=api_version)
    if faults:
        return _invalid(api_message(faults[0], anthropic_version=api_version))
    model = params["model"]
    value = params["max_tokens"]
    if rules is None or rules.output_limit(model) is None:
        # A model the rules table knows is held to its own maximum by the table, below.
        output_betas = (rules.table if rules is not None else load_rules_table()).output_betas
        limit = max([max_output_tokens, *(output_betas.get(b, 0) for b in betas)])
        if value > limit:
            return _invalid(
                f"max_tokens: {value} > {limit}, which is the maximum allowed number of output "
                f"tokens for {model}"
            )
    problem = _check_thinking(params.get("thinking"), betas)
    if problem is not None:
        return problem
    for violation in rules.check(params) if rules is not None else ():
        return _invalid(f"{violation.api_field}: {violation.message}")
    own_profile = params.get("user_profile_id")
    if user_profile_id and own_profile and own_profile != user_profile_id:
        return _invalid(
            "user_profile_id: conflicts with the batch's anthropic-user-profile-id header "
            f"({own_profile!r} != {user_profile_id!r})"
        )
    if not model_known(model, models):
        return RequestError("not_found_error", f"model: {model}")
    return None


_BINDING_FIELDS = frozenset({"prefix_mismatch_behavior"})
_BINDING_BEHAVIOURS = ("error", "drop_block")
_DISPLAYS = ("summarized", "omitted", "updates")


def _check_thinking(thinking: Any, betas: Sequence[str]) -> RequestError | None:
    """What the honoured thinking betas let ``thinking`` carry (docs/emulator.md, Betas).

    ``block_binding`` needs the binding-controls beta and a thinking type that has it
    (``enabled`` or ``adaptive``); ``display: "updates"`` needs the display-updates beta.
    Without its beta each is refused as the API refuses a field it does not know.
    """
    if not isinstance(thinking, dict):
        return None
    if "block_binding" in thinking:
        if BINDING_BETA not in betas:
            return _invalid(
                "thinking.block_binding: Extra inputs are not permitted (it needs the "
                f"`{BINDING_BETA}` beta in the anthropic-beta header)"
            )
        kind = thinking.get("type")
        if kind not in ("enabled", "adaptive"):
            return _invalid(
                f"thinking.block_binding: Extra inputs are not permitted for thinking.type "
                f"{kind!r} (only with 'enabled' or 'adaptive')"
            )
        binding = thinking["block_binding"]
        if binding is not None and not isinstance(binding, dict):
            return _invalid("thinking.block_binding: Input should be an object")
        for key in sorted(set(binding or {}) - _BINDING_FIELDS):
            return _invalid(f"thinking.block_binding.{key}: Extra inputs are not permitted")
        behaviour = (binding or {}).get("prefix_mismatch_behavior")
        if behaviour is not None and behaviour not in _BINDING_BEHAVIOURS:
            return _invalid(
                "thinking.block_binding.prefix_mismatch_behavior: Input should be 'error' or "
                f"'drop_block', not {behaviour!r}"
            )
    display = thinking.get("display")
    if display is not None and display not in _DISPLAYS:
        return _invalid(
            f"thinking.display: Input should be 'summarized' or 'omitted', not {display!r}"
        )
    if display == "updates" and DISPLAY_UPDATES_BETA not in betas:
        return _invalid(
            "thinking.display: 'updates' needs the "
            f"`{DISPLAY_UPDATES_BETA}` beta in the anthropic-beta header (without it: "
            "'summarized' or 'omitted')"
        )
    return None
