"""One request judged and encoded: ``RequestValidator.check``.

A JSONL line is decoded strictly (``_request_json``), its structure checked here, defaults applied,
then the extra rules (``checks``) run and the observers see it. A line that needs no default is
sent as the user's own bytes; defaults are spliced into the user's bytes (``splice_params``),
so a request is never re-encoded on the way (no float, escape or key-order drift).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import msgspec

from airflow_batches.api._envelope import ENVELOPE_BYTES, dump_member, dump_request, splice_params
from airflow_batches.api._models import CUSTOM_ID_PATTERN, PARAMS_REMOVED_IN, SDK_ONLY_KEYS
from airflow_batches.jobs.prepare._limits import MAX_TOKENS_CEILING, Limits
from airflow_batches.jobs.prepare._problems import Problem, kind, show
from airflow_batches.jobs.prepare._request_files import JSON_SPACE, Unreadable, guess_custom_id
from airflow_batches.jobs.prepare._request_json import audit, decode_line

ParamCheck = Callable[[Mapping[str, Any]], Iterable[tuple[str, str]]]
"""An extra rule over a request's params (defaults applied): yields ``(field, message)`` per
problem, ``field`` relative to ``params`` (``"tool_choice"``, ``"messages[0].role"``)."""
Observer = Callable[[str, Mapping[str, Any], bytes], None]
"""Sees every request that passed: ``(custom_id, params with defaults, encoded line)``."""
MetadataSink = Callable[[str, bytes], None]
"""Takes the ``metadata`` of every request that passed: ``(custom_id, its JSON)``."""
METADATA = "metadata"
_encode = msgspec.json.Encoder().encode

_CUSTOM_ID = re.compile(CUSTOM_ID_PATTERN)
_ROLES = ("user", "assistant")
_NOT_SENDABLE = SDK_ONLY_KEYS | {"stream"}


class _Envelope(msgspec.Struct):
    """A request line's two members as the bytes the user wrote (to splice defaults in)."""

    custom_id: msgspec.Raw
    params: msgspec.Raw


_split_envelope = msgspec.json.Decoder(_Envelope).decode


class RequestValidator:
    """Checks one request and encodes it; defaults are applied first.

    ``defaults`` fill parameters a request leaves out (a request's own value always wins, as a
    whole: a request's ``system`` replaces the default ``system``); ``default_model`` (from the
    connection) comes last. With a ``metadata`` sink, a request may also carry a ``metadata``
    member (any JSON value; ``jobs/_metadata``): it is never part of the encoded line, and the
    sink takes it once the request has passed. Without one, ``metadata`` is an unknown member.
    """

    def __init__(
        self,
        *,
        anthropic_version: str,
        defaults: Mapping[str, Any] | None = None,
        default_model: str | None = None,
        limits: Limits | None = None,
        checks: Sequence[ParamCheck] = (),
        observers: Sequence[Observer] = (),
        metadata: MetadataSink | None = None,
    ) -> None:
        self.anthropic_version = anthropic_version
        self.metadata = metadata
        self._envelope = "{custom_id, params, metadata}" if metadata else "{custom_id, params}"
        self.checks = tuple(checks)
        self.observers = tuple(observers)
        self.defaults = dict(defaults or {})
        self.default_model = default_model
        self.limits = limits or Limits()
        self._removed = PARAMS_REMOVED_IN.get(anthropic_version, frozenset())
        bad_defaults = sorted(_NOT_SENDABLE.intersection(self.defaults))
        if bad_defaults:
            raise ValueError(f"defaults: not allowed in a batch request: {', '.join(bad_defaults)}")
        if "custom_id" in self.defaults:
            raise ValueError("defaults: custom_id cannot have a default (it must be unique)")
        for fault in audit(self.defaults):
            raise ValueError(f"defaults: {fault.field}: {fault.message}")
        self._members = {key: dump_member(key, value) for key, value in self.defaults.items()}
        self._model_member = dump_member("model", default_model) if default_model else b""

    def check(self, location: str, raw: Any) -> tuple[str, bytes] | list[Problem]:
        """``(custom_id, encoded line)`` for a valid request, else its problems.

        ``raw`` is a JSONL line (bytes), an ``Unreadable`` record from the reader, or an
        in-memory request (a mapping, or a pydantic model).
        """
        line: bytes | None = None
        if type(raw) is bytes or isinstance(raw, bytearray | memoryview):
            line = bytes(raw).strip(JSON_SPACE)
            value, faults = decode_line(line)
        elif isinstance(raw, Unreadable):
            return [Problem(location, raw.custom_id, raw.field, raw.message)]
        else:
            if hasattr(raw, "model_dump"):
                raw = raw.model_dump(mode="json", exclude_unset=True)
            value, faults = raw, audit(raw)
        if faults:
            cid = _custom_id_of(value)
            if cid is None and line is not None:
                cid = guess_custom_id(line[:65536])
            return [Problem(location, cid, f.field, f.message) for f in faults]
        if type(value) is not dict and not isinstance(value, Mapping):
            hint = ""
            if isinstance(value, list) and line is not None:
                hint = " (a JSON array? a requests file is JSONL: one request object per line)"
            return [
                Problem(location, None, "(request)", f"expected an object, got {kind(value)}{hint}")
            ]

        problems: list[Problem] = []
        custom_id = value.get("custom_id")
        cid = custom_id if type(custom_id) is str or isinstance(custom_id, str) else None
        if custom_id is None:
            problems.append(Problem(location, None, "custom_id", "is required"))
        elif cid is None:
            problems.append(
                Problem(
                    location,
                    None,
                    "custom_id",
                    f"must be a string matching {CUSTOM_ID_PATTERN}, got {show(custom_id)}",
                )
            )
        elif not _CUSTOM_ID.fullmatch(cid):
            problems.append(Problem(location, cid, "custom_id", _bad_custom_id(cid)))
        has_metadata = False
        for key in value:
            if key != "custom_id" and key != "params":
                if key == METADATA and self.metadata is not None:
                    has_metadata = True
                    continue
                problems.append(
                    Problem(location, cid, key, f"unknown field (a request is {self._envelope})")
                )
        params = value.get("params")
        if type(params) is not dict and not isinstance(params, Mapping):
            what = "is required" if params is None else f"must be an object, got {kind(params)}"
            problems.append(Problem(location, cid, "params", what))
            return problems

        merged = params
        added = [k for k in self.defaults if k not in params] if self.defaults else []
        model_added = bool(
            self.default_model and "model" not in params and "model" not in self.defaults
        )
        if added or model_added:
            merged = {**{k: self.defaults[k] for k in added}, **params}
            if model_added:
                merged["model"] = self.default_model
        self._check_params(location, cid, merged, problems)
        for rule in self.checks:
            for name, message in rule(merged):
                problems.append(Problem(location, cid, f"params.{name}", message))
        if problems:
            return problems

        assert cid is not None
        if merged is params and line is not None and not has_metadata:
            encoded = line  # unchanged: the user's bytes, as they are
        elif line is not None:
            members = [self._members[k] for k in added]
            if model_added:
                members.append(self._model_member)
            parts = _split_envelope(line)
            encoded = splice_params(bytes(parts.custom_id), bytes(parts.params), members)
        else:
            try:
                encoded = dump_request({"custom_id": cid, "params": merged})
            except (TypeError, ValueError) as exc:
                return [Problem(location, cid, "params", f"not JSON-serialisable: {exc}")]
        size = len(encoded) + ENVELOPE_BYTES
        if size > self.limits.max_bytes:
            return [
                Problem(
                    location,
                    cid,
                    "(request)",
                    f"is {size} bytes encoded; a batch body is limited to "
                    f"{self.limits.max_bytes} bytes",
                )
            ]
        for observe in self.observers:
            observe(cid, merged, encoded)
        if has_metadata and self.metadata is not None:
            self.metadata(cid, _encode(value[METADATA]))
        return cid, encoded

    def _check_params(
        self, location: str, cid: str | None, params: Mapping[str, Any], out: list[Problem]
    ) -> None:
        model = params.get("model")
        if model is None:
            out.append(
                Problem(
                    location,
                    cid,
                    "params.model",
                    "is required (give it in the request, in defaults, or on the connection)",
                )
            )
        elif (type(model) is not str and not isinstance(model, str)) or not model:
            out.append(
                Problem(
                    location, cid, "params.model", f"must be a non-empty string, got {show(model)}"
                )
            )

        max_tokens = params.get("max_tokens")
        if type(max_tokens) is not int or not 1 <= max_tokens <= MAX_TOKENS_CEILING:
            self._judge_max_tokens(location, cid, max_tokens, out)

        messages = params.get("messages")
        if messages is None:
            out.append(Problem(location, cid, "params.messages", "is required"))
        elif (type(messages) is not list and not isinstance(messages, tuple)) or not messages:
            out.append(Problem(location, cid, "params.messages", "must be a non-empty list"))
        else:
            for i, message in enumerate(messages):
                if type(message) is not dict and not isinstance(message, Mapping):
                    out.append(
                        Problem(
                            location,
                            cid,
                            f"params.messages[{i}]",
                            f"must be an object, got {kind(message)}",
                        )
                    )
                    continue
                role = message.get("role")
                if role not in _ROLES:
                    out.append(Problem(location, cid, f"params.messages[{i}].role", _role(role)))
                content = message.get("content")
                if type(content) is not str and not isinstance(content, str | list | tuple):
                    what = (
                        "is required"
                        if content is None
                        else f"must be a string or a list of content blocks, got {kind(content)}"
                    )
                    out.append(Problem(location, cid, f"params.messages[{i}].content", what))

        if not _NOT_SENDABLE.isdisjoint(params):
            if "stream" in params and params["stream"] is not False:
                out.append(
                    Problem(
                        location,
                        cid,
                        "params.stream",
                        "streaming is not allowed in a batch request",
                    )
                )
            for key in sorted(SDK_ONLY_KEYS.intersection(params)):
                out.append(
                    Problem(
                        location,
                        cid,
                        f"params.{key}",
                        "an SDK option, not an API parameter: remove it",
                    )
                )
        if self._removed and not self._removed.isdisjoint(params):
            for key in sorted(self._removed.intersection(params)):
                out.append(
                    Problem(
                        location,
                        cid,
                        f"params.{key}",
                        f"is not accepted by anthropic-version {self.anthropic_version} "
                        "(pin the connection to 2023-06-01 to use it)",
                    )
                )

    @staticmethod
    def _judge_max_tokens(location: str, cid: str | None, value: Any, out: list[Problem]) -> None:
        if value is None:
            message = (
                "is required (give it in the request, or for every request in "
                'defaults={"max_tokens": ...})'
            )
        elif isinstance(value, bool) or not isinstance(value, int):
            message = f"must be an integer, got {show(value)}"
        elif value < 1:
            message = f"must be >= 1, got {show(value)}"
        else:
            message = f"out of range: must be at most {MAX_TOKENS_CEILING}, got {show(value)}"
        out.append(Problem(location, cid, "params.max_tokens", message))


def _role(role: Any) -> str:
    if role is None:
        return "is required ('user' or 'assistant')"
    if role == "system":
        return "'system' is not a role in messages: a system prompt goes in params.system"
    return f"must be 'user' or 'assistant', got {show(role)}"


def _bad_custom_id(cid: str) -> str:
    if not cid:
        why = "is empty"
    elif len(cid) > 64:
        why = f"is {len(cid):,} characters long"
    else:
        why = f"holds {show(next(c for c in cid if not _CUSTOM_ID.fullmatch(c)))}"
    return f"{why}; it must match {CUSTOM_ID_PATTERN}"


def _custom_id_of(value: Any) -> str | None:
    if isinstance(value, Mapping):
        custom_id = value.get("custom_id")
        if isinstance(custom_id, str):
            return custom_id
    return None
