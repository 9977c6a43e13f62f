"""Asynchronous validation of one request's params, as the API does after a batch is created.

A problem here never fails the create call: the request ends ``errored`` with the error this
function returns, and the rest of the batch is processed as usual.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from fnmatch import fnmatchcase
from typing import Any

from airflow_batches.api._models import PARAMS_REMOVED_IN, SDK_ONLY_KEYS
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
    for key in sorted(SDK_ONLY_KEYS.intersection(params)):
        return _invalid(f"{key}: Extra inputs are not permitted")
    for key in sorted(PARAMS_REMOVED_IN.get(api_version, frozenset()).intersection(params)):
        return _invalid(
            f"{key}: Extra inputs are not permitted (`{key}` is not a parameter under "
            f"anthropic-version {api_version})"
        )
    model = params.get("model")
    if model is None:
        return _invalid("model: Field required")
    if not isinstance(model, str) or not model:
        return _invalid("model: Input should be a valid string")
    known_limit = rules.output_limit(model) if rules is not None else None
    output_betas = (rules.table if rules is not None else load_rules_table()).output_betas
    limit = max([max_output_tokens, *(output_betas.get(b, 0) for b in betas)])
    problem = _check_max_tokens(params, limit, known_limit is not None)
    if problem is not None:
        return problem
    stream = params.get("stream", False)
    if stream is not False:
        return _invalid("stream: streaming is not supported in the Message Batches API")
    problem = _check_messages(params.get("messages")) or _check_thinking(
        params.get("thinking"), betas
    )
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


def _check_max_tokens(params: dict[str, Any], limit: int, ruled: bool) -> RequestError | None:
    """``limit`` applies to a model the rules table does not know (``ruled`` is False); the
    table checks the others against their own maximum."""
    if "max_tokens" not in params:
        return _invalid("max_tokens: Field required")
    value = params["max_tokens"]
    if isinstance(value, bool) or not isinstance(value, int):
        return _invalid("max_tokens: Input should be a valid integer")
    if value < 1:
        return _invalid("max_tokens: Input should be greater than or equal to 1")
    if value > limit and not ruled:
        return _invalid(
            f"max_tokens: {value} > {limit}, which is the maximum allowed number of output "
            f"tokens for {params.get('model')}"
        )
    return None


def _check_messages(messages: Any) -> RequestError | None:
    if messages is None:
        return _invalid("messages: Field required")
    if not isinstance(messages, list):
        return _invalid("messages: Input should be a valid list")
    if not messages:
        return _invalid("messages: List should have at least 1 item after validation")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return _invalid(f"messages.{i}: Input should be an object")
        if message.get("role") not in ("user", "assistant"):
            return _invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        content = message.get("content")
        if content is None:
            return _invalid(f"messages.{i}.content: Field required")
        if not isinstance(content, str | list):
            return _invalid(f"messages.{i}.content: Input should be a valid string or list")
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
