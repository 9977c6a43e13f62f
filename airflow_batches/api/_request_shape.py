"""The shape of one batch request, defined once.

A request is ``{"custom_id": ..., "params": {...}}``. Of ``params`` the batch endpoint itself
insists on a ``model``, a ``max_tokens`` of at least 1 and a non-empty list of ``messages``,
each with a ``role`` (``user`` or ``assistant``) and a string or list ``content``; on no
streaming, none of the official SDK's own options (``SDK_ONLY_KEYS``), and none of the
parameters the request's ``anthropic-version`` removed (``PARAMS_REMOVED_IN``). Every other
parameter passes through untouched.

The checks are pure: they return ``Fault``s and never raise. A fault names its field (a path,
like pydantic's ``loc``), what is wrong (``kind``, a closed set) and says it in plain words
(``message``). Each caller renders faults as its own kind of error:

- pre-flight (``jobs.prepare._validate``): all of them, as problems naming the line (or
  index), custom_id and field;
- the wire models (``_models``): the envelope and ``CLIENT_CHECKS``, as a pydantic
  ``ValidationError``; what a message holds is left to the API (and to pre-flight);
- the emulator: the envelope as the create call's 400 (``emulator.intake``), ``params`` as an
  errored result line (``emulator.validation``), both in the API's words.

tests/api/test_request_shape_cases.py drives every caller with one table of cases.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from airflow_batches.api._format import json_kind, show

__all__ = [
    "CLIENT_CHECKS",
    "CUSTOM_ID_MAX",
    "CUSTOM_ID_PATTERN",
    "NOT_SENDABLE",
    "PARAMS_CHECKS",
    "PARAMS_REMOVED_IN",
    "REQUEST_KEYS",
    "ROLES",
    "SDK_ONLY_KEYS",
    "AtField",
    "Fault",
    "api_path",
    "field_path",
    "params_faults",
    "request_faults",
]

CUSTOM_ID_MAX: Final = 64
CUSTOM_ID_PATTERN: Final = rf"^[a-zA-Z0-9_-]{{1,{CUSTOM_ID_MAX}}}$"
REQUEST_KEYS: Final = ("custom_id", "params")
ROLES: Final = ("user", "assistant")

SDK_ONLY_KEYS: Final = frozenset({"extra_body", "extra_headers", "extra_query", "timeout", "betas"})
"""Keyword arguments of the official SDK that are not API parameters; one in ``params`` fails."""
NOT_SENDABLE: Final = SDK_ONLY_KEYS | {"stream"}
"""Keys no request's params may hold (``stream`` only as ``false``), nor a job's defaults."""

PARAMS_REMOVED_IN: Final[dict[str, frozenset[str]]] = {
    "2026-10-21": frozenset({"temperature", "top_p", "top_k"}),
}
"""Messages parameters that an ``anthropic-version`` no longer accepts."""

Kind = Literal[
    "missing", "null", "type", "empty", "too_small", "pattern", "choice", "unknown",
    "stream", "sdk_only", "removed",
]  # fmt: skip
"""What is wrong: absent, given as null, of another type, empty, below its minimum, not
matching its pattern, not one of its choices, not a member of a request, streaming asked
for, an SDK option, removed by the request's anthropic-version."""
FieldPath = tuple[str | int, ...]
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CUSTOM_ID = re.compile(CUSTOM_ID_PATTERN)


class AtField:
    """Something found at a field of a request (``path``), which it writes two ways."""

    __slots__ = ()
    path: FieldPath

    @property
    def field(self) -> str:
        """The path as pre-flight problems write it: ``params.messages[3].role``."""
        return field_path(self.path)

    @property
    def api_field(self) -> str:
        """The path as the API's error messages write it: ``params.messages.3.role``."""
        return api_path(self.path)


@dataclass(frozen=True, slots=True)
class Fault(AtField):
    """One thing wrong with a request's shape."""

    path: FieldPath
    """Where: ``("params", "messages", 0, "role")``, relative to what was checked."""
    kind: Kind
    message: str
    """What is wrong in plain words, without the field: ``must be >= 1, got 0``."""
    expected: str = ""
    """What the field should be: ``string``, ``integer``, ``list``, ``object``, ``string or
    list``, ``'user' or 'assistant'``, a pattern; empty where it says nothing more."""
    value: Any = None
    """What was found (None when it is absent)."""


def field_path(path: Iterable[Any]) -> str:
    """A path as pre-flight writes it: ``params.messages[0].role``; ``(request)`` when empty.
    A key that is not an identifier is quoted: ``params['a b']``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif isinstance(part, str) and _IDENTIFIER.fullmatch(part):
            text += f".{part}" if text else part
        else:
            text += f"[{show(part)}]"
    return text or "(request)"


def api_path(path: Iterable[Any]) -> str:
    """A path as the API's errors write it: ``messages.0.role``."""
    return ".".join(str(part) for part in path)


# --- the envelope ---------------------------------------------------------------------------


def request_faults(item: Any, *, also: Sequence[str] = ()) -> list[Fault]:
    """The faults of a request's envelope: an object holding a ``custom_id`` of the API's
    pattern, a ``params`` object, and nothing else (but the members named in ``also``).

    What ``params`` holds is ``params_faults``'s business.
    """
    if type(item) is not dict and not isinstance(item, Mapping):
        return [Fault((), "type", f"expected an object, got {json_kind(item)}", "object", item)]
    custom_id = item.get("custom_id")
    params = item.get("params")
    good_id = type(custom_id) is str and _CUSTOM_ID.fullmatch(custom_id) is not None
    good_params = type(params) is dict or isinstance(params, Mapping)
    if good_id and good_params and len(item) == 2:
        return []  # the common case: nothing else to look at
    faults: list[Fault] = []
    if not good_id:
        faults.append(_custom_id_fault(item, custom_id))
    members = (*REQUEST_KEYS, *also) if also else REQUEST_KEYS
    for key in item:
        if key not in members:
            where = key if isinstance(key, str) else repr(key)
            text = f"unknown field (a request is {{{', '.join(members)}}})"
            faults.append(Fault((where,), "unknown", text, value=item[key]))
    if not good_params:
        if params is None:
            faults.append(_absent(item, "params", (), "object"))
        else:
            text = f"must be an object, got {json_kind(params)}"
            faults.append(Fault(("params",), "type", text, "object", params))
    return faults


def _custom_id_fault(item: Mapping[str, Any], custom_id: Any) -> Fault:
    if custom_id is None:
        return _absent(item, "custom_id", (), "string")
    if not isinstance(custom_id, str):
        text = f"must be a string matching {CUSTOM_ID_PATTERN}, got {show(custom_id)}"
        return Fault(("custom_id",), "type", text, "string", custom_id)
    text = _bad_custom_id(custom_id)
    return Fault(("custom_id",), "pattern", text, CUSTOM_ID_PATTERN, custom_id)


def _bad_custom_id(custom_id: str) -> str:
    if not custom_id:
        why = "is empty"
    elif len(custom_id) > CUSTOM_ID_MAX:
        why = f"is {len(custom_id):,} characters long"
    else:
        why = f"holds {show(next(c for c in custom_id if not _CUSTOM_ID.fullmatch(c)))}"
    return f"{why}; it must match {CUSTOM_ID_PATTERN}"


def _absent(
    container: Mapping[str, Any], key: str, at: FieldPath, expected: str, text: str = "is required"
) -> Fault:
    """``key`` of ``container`` is absent, or null: either way it is required."""
    kind: Kind = "null" if key in container else "missing"
    return Fault((*at, key), kind, text, expected)


# --- params ---------------------------------------------------------------------------------
# Each check appends its faults to ``out``; the common case (nothing wrong) costs a few type
# tests, since pre-flight runs them on every request of a job.

_Check = Callable[[Mapping[str, Any], FieldPath, list[Fault]], None]


def _model(params: Mapping[str, Any], at: FieldPath, out: list[Fault]) -> None:
    model = params.get("model")
    if type(model) is str and model:
        return
    if model is None:
        out.append(_absent(params, "model", at, "string"))
    else:
        kind: Kind = "empty" if isinstance(model, str) else "type"
        text = f"must be a non-empty string, got {show(model)}"
        out.append(Fault((*at, "model"), kind, text, "string", model))


def _max_tokens(params: Mapping[str, Any], at: FieldPath, out: list[Fault]) -> None:
    value = params.get("max_tokens")
    if type(value) is int and value >= 1:
        return
    path = (*at, "max_tokens")
    if value is None:
        out.append(_absent(params, "max_tokens", at, "integer"))
    elif isinstance(value, bool) or not isinstance(value, int):
        out.append(Fault(path, "type", f"must be an integer, got {show(value)}", "integer", value))
    elif value < 1:
        out.append(Fault(path, "too_small", f"must be >= 1, got {show(value)}", "1", value))


def _messages(params: Mapping[str, Any], at: FieldPath, out: list[Fault]) -> None:
    messages = params.get("messages")
    if type(messages) is not list and not isinstance(messages, list | tuple):
        if messages is None:
            out.append(_absent(params, "messages", at, "list"))
        else:
            out.append(
                Fault((*at, "messages"), "type", "must be a non-empty list", "list", messages)
            )
        return
    if not messages:
        out.append(Fault((*at, "messages"), "empty", "must be a non-empty list", "list", messages))
    for i, message in enumerate(messages):
        if type(message) is not dict and not isinstance(message, Mapping):
            text = f"must be an object, got {json_kind(message)}"
            out.append(Fault((*at, "messages", i), "type", text, "object", message))
            continue
        if message.get("role") not in ROLES:
            out.append(_bad_role(message, (*at, "messages", i)))
        content = message.get("content")
        if type(content) is not str and not isinstance(content, str | list | tuple):
            out.append(_bad_content(message, (*at, "messages", i)))


def _bad_content(message: Mapping[str, Any], at: FieldPath) -> Fault:
    content = message.get("content")
    if content is None:
        return _absent(message, "content", at, "string or list")
    text = f"must be a string or a list of content blocks, got {json_kind(content)}"
    return Fault((*at, "content"), "type", text, "string or list", content)


def _bad_role(message: Mapping[str, Any], at: FieldPath) -> Fault:
    role = message.get("role")
    choices = " or ".join(repr(r) for r in ROLES)
    if role is None:
        return _absent(message, "role", at, choices, f"is required ({choices})")
    if role == "system":
        text = "'system' is not a role in messages: a system prompt goes in params.system"
    else:
        text = f"must be {choices}, got {show(role)}"
    return Fault((*at, "role"), "choice", text, choices, role)


def _not_sendable(params: Mapping[str, Any], at: FieldPath, out: list[Fault]) -> None:
    if NOT_SENDABLE.isdisjoint(params):
        return
    if "stream" in params and params["stream"] is not False:
        text = "streaming is not allowed in a batch request"
        out.append(Fault((*at, "stream"), "stream", text, "false", params["stream"]))
    for key in sorted(SDK_ONLY_KEYS.intersection(params)):
        text = "an SDK option, not an API parameter: remove it"
        out.append(Fault((*at, key), "sdk_only", text, value=params[key]))


def _unremarkable(params: Mapping[str, Any]) -> bool:
    """True when no check of ``PARAMS_CHECKS`` would find a fault, decided in one call (the
    checks are four calls, and most requests pass them all): each test below is the early
    return of its check. False only means that the checks must look.
    ``tests/api/test_params_first_test.py`` holds the two to agreeing on generated params."""
    if type(params) is not dict:
        return False
    model, max_tokens, messages = (
        params.get("model"),
        params.get("max_tokens"),
        params.get("messages"),
    )
    if not (
        type(model) is str
        and model
        and type(max_tokens) is int
        and max_tokens >= 1
        and type(messages) is list
        and messages
        and NOT_SENDABLE.isdisjoint(params)
    ):
        return False
    for message in messages:
        if type(message) is not dict or message.get("role") not in ROLES:
            return False
        content = message.get("content")
        if type(content) is not str and type(content) is not list:
            return False
    return True


PARAMS_CHECKS: Final[dict[str, _Check]] = {
    "model": _model,
    "max_tokens": _max_tokens,
    "messages": _messages,
    "not_sendable": _not_sendable,
}
"""Every check of ``params``, in the order their faults are listed."""
CLIENT_CHECKS: Final = ("model", "max_tokens", "not_sendable")
"""What the client refuses before sending: what no request can be sent with. The messages
themselves are left to the API, and to pre-flight, which checks them all."""
_ALL_CHECKS: Final = tuple(PARAMS_CHECKS.values())


def params_faults(
    params: Mapping[str, Any],
    *,
    anthropic_version: str | None = None,
    checks: Iterable[str] | None = None,
    at: FieldPath = (),
) -> list[Fault]:
    """The faults of a request's ``params``, in ``PARAMS_CHECKS`` order (only those named in
    ``checks``, when given); then, with an ``anthropic_version``, the parameters it removed.
    Paths start at ``at``."""
    faults: list[Fault] = []
    if checks is not None or not _unremarkable(params):
        for check in _ALL_CHECKS if checks is None else (PARAMS_CHECKS[name] for name in checks):
            check(params, at, faults)
    removed = PARAMS_REMOVED_IN.get(anthropic_version) if anthropic_version else None
    if removed and not removed.isdisjoint(params):
        for key in sorted(removed.intersection(params)):
            text = (
                f"is not accepted by anthropic-version {anthropic_version} "
                "(pin the connection to 2023-06-01 to use it)"
            )
            faults.append(Fault((*at, key), "removed", text, value=params[key]))
    return faults
