"""One request judged and encoded: ``RequestValidator.check``.

A JSONL line is decoded strictly (``_request_json``), its shape checked (``api._request_shape``,
rendered here as problems naming the line, custom_id and field), defaults applied, then the
extra rules (``checks``) run and the observers see it. A line that needs no default is
sent as the user's own bytes; defaults are spliced into the user's bytes (``splice_params``),
so a request is never re-encoded on the way (no float, escape or key-order drift).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import msgspec

from airflow_batches.api._envelope import ENVELOPE_BYTES, dump_member, dump_request, splice_params
from airflow_batches.api._format import show
from airflow_batches.api._request_shape import (
    NOT_SENDABLE,
    PARAMS_CHECKS,
    Fault,
    params_faults,
    request_faults,
)
from airflow_batches.jobs.prepare._limits import MAX_TOKENS_CEILING, Limits
from airflow_batches.jobs.prepare._problems import Problem
from airflow_batches.jobs.prepare._request_files import JSON_SPACE, Unreadable, guess_custom_id
from airflow_batches.jobs.prepare._request_json import audit, decode_request

ParamCheck = Callable[[Mapping[str, Any]], Iterable[tuple[str, str]]]
"""An extra rule over a request's params (defaults applied): yields ``(field, message)`` per
problem, ``field`` relative to ``params`` (``"tool_choice"``, ``"messages[0].role"``)."""
Observer = Callable[[str, Mapping[str, Any], bytes], None]
"""Sees every request that passed: ``(custom_id, params with defaults, encoded line)``."""
MetadataSink = Callable[[str, bytes], None]
"""Takes the ``metadata`` of every request that passed: ``(custom_id, its JSON)``."""
METADATA = "metadata"
_encode = msgspec.json.Encoder().encode

_PARAMS = ("params",)
_BUT_MODEL = tuple(name for name in PARAMS_CHECKS if name != "model")
_ABSENT = ("missing", "null")
_HINTS: dict[tuple[str | int, ...], str] = {
    ("params", "model"): "is required (give it in the request, in defaults, or on the connection)",
    ("params", "max_tokens"): (
        'is required (give it in the request, or for every request in defaults={"max_tokens": ...})'
    ),
}
"""Where pre-flight knows more than the shape: a member a job can also set for every request."""


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
        self._also = (METADATA,) if metadata else ()
        self.checks = tuple(checks)
        self.observers = tuple(observers)
        self.defaults = dict(defaults or {})
        self.default_model = default_model
        self.limits = limits or Limits()
        bad_defaults = sorted(NOT_SENDABLE.intersection(self.defaults))
        if bad_defaults:
            raise ValueError(f"defaults: not allowed in a batch request: {', '.join(bad_defaults)}")
        if "custom_id" in self.defaults:
            raise ValueError("defaults: custom_id cannot have a default (it must be unique)")
        for fault in audit(self.defaults):
            raise ValueError(f"defaults: {fault.field}: {fault.message}")
        self._members = {key: dump_member(key, value) for key, value in self.defaults.items()}
        self._model_member = dump_member("model", default_model) if default_model else b""
        self._plain_defaults = plain_json(self.defaults)
        self._default_model = (
            default_model if default_model and "model" not in self.defaults else None
        )
        self._as_given = not (
            self.defaults or self._default_model or self.checks or self.observers or metadata
        )

    def check(self, location: str, raw: Any) -> tuple[str, bytes] | list[Problem]:
        """``(custom_id, encoded line)`` for a valid request, else its problems.

        ``raw`` is a JSONL line (bytes), an ``Unreadable`` record from the reader, or an
        in-memory request (a mapping, or a pydantic model).
        """
        if type(raw) is bytes and self._as_given:
            plain = self._as_it_is(raw)
            if plain is not None:
                return plain
        read = self.read(location, raw)
        if type(read) is list:
            return read
        return self.judge(location, read, read.params, read.custom_id, read.line)  # type: ignore[union-attr, arg-type]

    def _as_it_is(self, raw: bytes) -> tuple[str, bytes] | None:
        """``(custom_id, line)`` of a JSONL line that passes as the user wrote it, with no
        default, check, observer or metadata sink to apply: the checks of :meth:`read` and
        :meth:`judge`, in one go. None for any other line (then judged the long way, which
        finds its problems)."""
        line = raw.strip(JSON_SPACE)
        value, faults, _ = decode_request(line)
        if faults or type(value) is not dict or request_faults(value):
            return None
        params, cid = value["params"], value["custom_id"]
        if params_faults(params, anthropic_version=self.anthropic_version):
            return None
        max_tokens = params.get("max_tokens")
        if type(max_tokens) is int and max_tokens > MAX_TOKENS_CEILING:
            return None
        if len(line) + ENVELOPE_BYTES > self.limits.max_bytes:
            return None
        return cid, line

    def read(self, location: str, raw: Any) -> Read | list[Problem]:
        """The first half of :meth:`check`, what does not depend on the params' defaults: the
        request decoded (strictly) and its envelope judged. Its problems when it cannot be
        judged further; else a :class:`Read` for :meth:`judge` (a model matrix judges one
        ``Read`` once per model)."""
        line: bytes | None = None
        exotic = True
        if type(raw) is bytes:
            line = raw.strip(JSON_SPACE)
            value, faults, exotic = decode_request(line)
        elif isinstance(raw, bytearray | memoryview):
            line = bytes(raw).strip(JSON_SPACE)
            value, faults, exotic = decode_request(line)
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
        envelope = request_faults(value, also=self._also)
        if type(value) is not dict and not isinstance(value, Mapping):
            hint = ""
            if isinstance(value, list) and line is not None:
                hint = " (a JSON array? a requests file is JSONL: one request object per line)"
            return [Problem(location, None, f.field, f.message + hint) for f in envelope]
        custom_id = value.get("custom_id")
        cid = custom_id if type(custom_id) is str or isinstance(custom_id, str) else None
        params = value.get("params")
        if type(params) is not dict and not isinstance(params, Mapping):
            return [Problem(location, cid, f.field, f.message) for f in envelope]
        return Read(value, params, cid, line, envelope, exotic)

    def judge(
        self,
        location: str,
        read: Read,
        params: Mapping[str, Any],
        cid: str | None,
        line: bytes | None,
        plain: bool = False,
    ) -> tuple[str, bytes] | list[Problem]:
        """The second half of :meth:`check`: ``params`` (the request's, or a matrix copy's)
        with defaults applied, judged, then the request encoded under ``cid``: as ``line``
        (the user's bytes, None for a copy) when nothing was added, else spliced into it, else
        encoded as ``json.dumps`` would: by msgspec when the two agree byte for byte (the
        request was decoded and holds no float with an exponent, the defaults added are
        :func:`plain_json`, and so is what the caller put in ``params``, if ``plain``)."""
        merged = params
        added = [k for k in self.defaults if k not in params] if self.defaults else []
        model_added = self._default_model is not None and "model" not in params
        if added or model_added:
            merged = {**{k: self.defaults[k] for k in added}, **params}
            if model_added:
                merged["model"] = self.default_model
        faults = self._faults(merged, None)
        if faults or read.envelope or self.checks:
            problems = self._problems(location, cid, read, faults, merged)
            if problems:
                return problems

        assert cid is not None
        if merged is params and line is not None and not self._has_metadata(read):
            encoded = line  # unchanged: the user's bytes, as they are
        elif line is not None:
            members = [self._members[k] for k in added]
            if model_added:
                members.append(self._model_member)
            parts = _split_envelope(line)
            encoded = splice_params(bytes(parts.custom_id), bytes(parts.params), members)
        else:
            payload = {"custom_id": cid, "params": merged}
            try:
                exotic = read.exotic or not plain or (added and not self._plain_defaults)
                encoded = dump_request(payload) if exotic else _encode(payload)
            except (TypeError, ValueError, msgspec.EncodeError, OverflowError) as exc:
                return [Problem(location, cid, "params", f"not JSON-serialisable: {exc}")]
        return self._accepted(location, cid, read, merged, encoded)

    def shared(self, read: Read) -> Shared | None:
        """What judging each copy of a matrix request shares, when the copies differ only in
        their ``model`` (none of their own params, none in the request's): the request's
        params with defaults, their faults but the model's, and their encoding. None when
        each copy must be judged on its own (:meth:`judge`)."""
        params = read.params
        if "model" in params:
            return None
        added = [k for k in self.defaults if k not in params] if self.defaults else []
        merged = {**{k: self.defaults[k] for k in added}, **params} if added else params
        faults = self._faults(merged, _BUT_MODEL)
        if faults:
            return Shared(merged, faults, b"")
        try:
            exotic = read.exotic or (added and not self._plain_defaults)
            encoded = dump_request(merged) if exotic else _encode(merged)
        except (TypeError, ValueError, msgspec.EncodeError, OverflowError):
            return None
        return Shared(merged, faults, encoded[:-1] + b"," if len(encoded) > 2 else b"{")

    def copy(
        self, location: str, read: Read, shared: Shared, cid: str, model: str, member: bytes
    ) -> tuple[str, bytes] | list[Problem]:
        """:meth:`judge` of one matrix copy (``model``, ``cid``) from what its request's copies
        share (:meth:`shared`): the same problems, and the same bytes. ``member`` is the model
        as ``dump_member("model", model)`` writes it."""
        merged: Mapping[str, Any] = shared.merged
        if self.checks or self.observers:
            merged = {**merged, "model": model}
        if read.envelope or shared.faults or self.checks:
            problems = self._problems(location, cid, read, shared.faults, merged)
            if problems:
                return problems
        encoded = b"".join(
            (b'{"custom_id":"', cid.encode(), b'","params":', shared.encoded, member, b"}}")
        )
        if len(encoded) + ENVELOPE_BYTES > self.limits.max_bytes or self.observers:
            return self._accepted(location, cid, read, merged, encoded)
        if self.metadata is not None and METADATA in read.value:
            self.metadata(cid, read.metadata_json())
        return cid, encoded

    def _faults(
        self, merged: Mapping[str, Any], checks: Sequence[str] | None
    ) -> list[tuple[str, str]]:
        """``(field, message)`` of what the shape checks (``checks``) and the ceiling find."""
        found = [
            (
                fault.field,
                _HINTS.get(fault.path, fault.message) if fault.kind in _ABSENT else fault.message,
            )
            for fault in params_faults(
                merged, anthropic_version=self.anthropic_version, checks=checks, at=_PARAMS
            )
        ]
        max_tokens = merged.get("max_tokens")
        if type(max_tokens) is int and max_tokens > MAX_TOKENS_CEILING:
            found.append(("params.max_tokens", _out_of_range(max_tokens)))
        return found

    def _problems(
        self,
        location: str,
        cid: str | None,
        read: Read,
        faults: list[tuple[str, str]],
        merged: Mapping[str, Any],
    ) -> list[Problem]:
        """Every problem of a request, in order: its envelope's, ``faults``, the checks'."""
        problems = [Problem(location, cid, f.field, f.message) for f in read.envelope]
        for name, message in faults:
            problems.append(Problem(location, cid, name, message))
        for rule in self.checks:
            for name, message in rule(merged):
                problems.append(Problem(location, cid, f"params.{name}", message))
        return problems

    def _has_metadata(self, read: Read) -> bool:
        return self.metadata is not None and METADATA in read.value

    def _accepted(
        self, location: str, cid: str, read: Read, merged: Mapping[str, Any], encoded: bytes
    ) -> tuple[str, bytes] | list[Problem]:
        """The size check, then the observers and the metadata sink see the request."""
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
        if self.metadata is not None and METADATA in read.value:
            self.metadata(cid, read.metadata_json())
        return cid, encoded


class Shared:
    """What the copies of one matrix request share (:meth:`RequestValidator.shared`)."""

    __slots__ = ("encoded", "faults", "merged")

    def __init__(self, merged: Mapping[str, Any], faults: list[tuple[str, str]], encoded: bytes):
        self.merged = merged
        self.faults = faults
        self.encoded = encoded
        """The params' JSON but its closing brace, ready for ``"model":...}``."""


class Read:
    """A request decoded and its envelope judged (:meth:`RequestValidator.read`)."""

    __slots__ = ("_metadata", "custom_id", "envelope", "exotic", "line", "params", "value")

    def __init__(
        self,
        value: Mapping[str, Any],
        params: Mapping[str, Any],
        custom_id: str | None,
        line: bytes | None,
        envelope: list[Fault],
        exotic: bool,
    ) -> None:
        self.value = value
        self.params = params
        self.custom_id = custom_id
        self.line = line
        self.envelope = envelope
        self.exotic = exotic
        """Whether ``value`` may hold what msgspec and ``json.dumps`` write differently (a
        float with an exponent; anything of an in-memory request): then ``json.dumps``."""
        self._metadata: bytes | None = None

    def metadata_json(self) -> bytes:
        """The request's ``metadata`` member as JSON (encoded once, however many copies)."""
        if self._metadata is None:
            self._metadata = _encode(self.value[METADATA])
        return self._metadata


def plain_json(value: Any) -> bool:
    """Whether msgspec writes ``value`` as ``json.dumps`` (compact, ``ensure_ascii=False``)
    does, byte for byte (what a job's defaults and a matrix model's params are held to before
    their copies are encoded by msgspec)."""
    try:
        return bool(_encode(value) == dump_request(value))
    except (TypeError, ValueError, msgspec.EncodeError, OverflowError):
        return False


def _out_of_range(value: int) -> str:
    return f"out of range: must be at most {MAX_TOKENS_CEILING}, got {show(value)}"


def _custom_id_of(value: Any) -> str | None:
    if isinstance(value, Mapping):
        custom_id = value.get("custom_id")
        if isinstance(custom_id, str):
            return custom_id
    return None
