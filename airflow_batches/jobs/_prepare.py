"""Pre-flight: validate every request, encode it once, and plan the batches (shards).

One pass over the input, whatever its size: each request is checked, encoded exactly as it
will be sent, appended to a staging file and assigned to a shard. Nothing is sent until the
whole input has passed, so a bad line 90,000 never leaves 89,999 requests half-submitted.
Memory holds one request at a time plus one small integer per custom_id (for uniqueness).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Literal

from airflow_batches.api import BatchesError
from airflow_batches.api._envelope import ENVELOPE_BYTES, ENVELOPE_HEAD, ENVELOPE_TAIL, dump_request
from airflow_batches.api._models import (
    CUSTOM_ID_PATTERN,
    MAX_REQUESTS_PER_BATCH,
    PARAMS_REMOVED_IN,
    SDK_ONLY_KEYS,
)
from airflow_batches.jobs._ids import IdsDigest

_CUSTOM_ID = re.compile(CUSTOM_ID_PATTERN)
_BOM = b"\xef\xbb\xbf"

OnInvalid = Literal["fail", "skip"]

ParamCheck = Callable[[Mapping[str, Any]], Iterable[tuple[str, str]]]
"""An extra rule over a request's params (defaults applied): yields ``(field, message)`` per
problem, ``field`` relative to ``params`` (``"tool_choice"``, ``"messages[0].role"``)."""
Observer = Callable[[str, Mapping[str, Any], bytes], None]
"""Sees every request that passed: ``(custom_id, params with defaults, encoded line)``."""


@dataclass(frozen=True)
class Limits:
    """Per-batch limits used to shard a job.

    The API allows 100,000 requests or 256 MB per batch. "MB" is not defined further, so the
    byte limit defaults to the stricter decimal reading (256,000,000 bytes of body, measured on
    the exact bytes sent, envelope and separators included).
    """

    max_requests: int = MAX_REQUESTS_PER_BATCH
    max_bytes: int = 256_000_000

    def __post_init__(self) -> None:
        if self.max_requests < 1:
            raise ValueError("max_requests must be >= 1")
        if self.max_bytes <= ENVELOPE_BYTES:
            raise ValueError(f"max_bytes must be > {ENVELOPE_BYTES}")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one request."""

    location: str
    """``line 12`` for a JSONL input, ``request 3`` (0-based) for a list."""
    custom_id: str | None
    field: str
    message: str

    def __str__(self) -> str:
        who = f"{self.location} (custom_id {self.custom_id!r})" if self.custom_id else self.location
        return f"{who}: {self.field}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "custom_id": self.custom_id,
            "field": self.field,
            "message": self.message,
        }


class RequestValidationError(BatchesError):
    """Requests failed pre-flight validation; nothing was sent."""

    def __init__(
        self,
        message: str,
        *,
        problems: list[dict[str, Any]] | None = None,
        total: int = 0,
    ) -> None:
        super().__init__(message)
        self.problems = problems or []
        self.total = total

    def _state(self) -> dict[str, Any]:
        return {"message": self.message, "problems": self.problems, "total": self.total}

    @classmethod
    def from_problems(
        cls, problems: list[Problem], total: int, *, anthropic_version: str, shown: int = 25
    ) -> RequestValidationError:
        lines = [str(p) for p in problems[:shown]]
        more = total - len(lines)
        text = (
            f"{total} invalid request(s) (validated for anthropic-version "
            f"{anthropic_version}); nothing was submitted:\n  " + "\n  ".join(lines)
        )
        if more > 0:
            text += f"\n  ... and {more} more"
        return cls(text, problems=[p.to_dict() for p in problems], total=total)


@dataclass(frozen=True)
class Shard:
    """A contiguous run of staged requests that becomes one batch."""

    index: int
    first: int
    """Ordinal (0-based) of the shard's first request among the accepted ones."""
    count: int
    offset: int
    """Byte offset of the shard's first line in the staging file."""
    length: int
    """Bytes of the shard's lines in the staging file, newlines included."""
    ids_digest: str = ""
    """Digest of the shard's custom_ids (``_ids``): how a fetch tells its results are ours."""

    @property
    def body_bytes(self) -> int:
        """Exact size of the create body: envelope + lines joined by commas."""
        return ENVELOPE_BYTES + self.length - 1


@dataclass
class Prepared:
    """The outcome of pre-flight: what will be sent, where it is staged, how it is split."""

    fingerprint: str
    request_count: int
    shards: list[Shard]
    rejected: list[Problem] = field(default_factory=list)
    rejected_count: int = 0


class RequestValidator:
    """Checks one request and encodes it; defaults are applied first.

    ``defaults`` fill parameters a request leaves out (a request's own value always wins, as a
    whole: a request's ``system`` replaces the default ``system``); ``default_model`` (from the
    connection) comes last.
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
    ) -> None:
        self.anthropic_version = anthropic_version
        self.checks = tuple(checks)
        self.observers = tuple(observers)
        self.defaults = dict(defaults or {})
        self.default_model = default_model
        self.limits = limits or Limits()
        self._removed = PARAMS_REMOVED_IN.get(anthropic_version, frozenset())
        bad_defaults = sorted(SDK_ONLY_KEYS.union({"stream"}).intersection(self.defaults))
        if bad_defaults:
            raise ValueError(f"defaults: not allowed in a batch request: {', '.join(bad_defaults)}")
        if "custom_id" in self.defaults:
            raise ValueError("defaults: custom_id cannot have a default (it must be unique)")

    def check(self, location: str, raw: Any) -> tuple[str, bytes] | list[Problem]:
        """``(custom_id, encoded line)`` for a valid request, else its problems."""
        raw_bytes: bytes | None = None
        if isinstance(raw, bytes | bytearray):
            raw_bytes = bytes(raw).strip()
            try:
                raw = json.loads(raw_bytes, parse_constant=_reject_constant)
            except (ValueError, UnicodeDecodeError) as exc:
                return [Problem(location, None, "(line)", f"not valid JSON: {exc}")]
        elif hasattr(raw, "model_dump"):
            raw = raw.model_dump(mode="json", exclude_unset=True)

        if not isinstance(raw, Mapping):
            return [Problem(location, None, "(request)", f"expected an object, got {_kind(raw)}")]
        problems: list[Problem] = []
        custom_id = raw.get("custom_id")
        cid = custom_id if isinstance(custom_id, str) else None
        if custom_id is None:
            problems.append(Problem(location, None, "custom_id", "is required"))
        elif not isinstance(custom_id, str) or not _CUSTOM_ID.fullmatch(custom_id):
            problems.append(
                Problem(
                    location,
                    cid,
                    "custom_id",
                    f"{custom_id!r} must match ^[a-zA-Z0-9_-]{{1,64}}$",
                )
            )
        for key in raw:
            if key not in ("custom_id", "params"):
                problems.append(
                    Problem(location, cid, key, "unknown field (a request is {custom_id, params})")
                )
        params = raw.get("params")
        if not isinstance(params, Mapping):
            what = "is required" if params is None else f"must be an object, got {_kind(params)}"
            problems.append(Problem(location, cid, "params", what))
            return problems

        merged = params
        added = [k for k in self.defaults if k not in params]
        if added or ("model" not in params and self.default_model):
            merged = {**{k: self.defaults[k] for k in added}, **params}
            if "model" not in merged and self.default_model:
                merged["model"] = self.default_model
        problems.extend(self._check_params(location, cid, merged))
        for rule in self.checks:
            for name, message in rule(merged):
                problems.append(Problem(location, cid, f"params.{name}", message))
        if problems:
            return problems

        assert cid is not None
        if merged is params and raw_bytes is not None:
            # Unchanged: send the user's bytes as they are (no float or key-order drift).
            line = raw_bytes[3:] if raw_bytes.startswith(_BOM) else raw_bytes
        else:
            try:
                line = dump_request({"custom_id": cid, "params": merged})
            except (TypeError, ValueError) as exc:
                return [Problem(location, cid, "params", f"not JSON-serialisable: {exc}")]
        size = len(line) + ENVELOPE_BYTES
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
            observe(cid, merged, line)
        return cid, line

    def _check_params(
        self, location: str, cid: str | None, params: Mapping[str, Any]
    ) -> list[Problem]:
        out: list[Problem] = []

        def bad(name: str, message: str) -> None:
            out.append(Problem(location, cid, f"params.{name}", message))

        model = params.get("model")
        if model is None:
            bad("model", "is required (give it in the request, in defaults, or on the connection)")
        elif not isinstance(model, str) or not model:
            bad("model", f"must be a non-empty string, got {model!r}")

        max_tokens = params.get("max_tokens")
        if max_tokens is None:
            bad("max_tokens", "is required")
        elif isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            bad("max_tokens", f"must be an integer, got {max_tokens!r}")
        elif max_tokens < 1:
            bad("max_tokens", f"must be >= 1, got {max_tokens}")

        messages = params.get("messages")
        if messages is None:
            bad("messages", "is required")
        elif not isinstance(messages, list) or not messages:
            bad("messages", "must be a non-empty list")
        else:
            for i, message in enumerate(messages):
                if not isinstance(message, Mapping):
                    bad(f"messages[{i}]", f"must be an object, got {_kind(message)}")
                elif "role" not in message or "content" not in message:
                    bad(f"messages[{i}]", "needs both role and content")

        if "stream" in params and params["stream"] is not False:
            bad("stream", "streaming is not allowed in a batch request")
        for key in sorted(SDK_ONLY_KEYS.intersection(params)):
            bad(key, "an SDK option, not an API parameter: remove it")
        for key in sorted(self._removed.intersection(params)):
            bad(
                key,
                f"is not accepted by anthropic-version {self.anthropic_version} "
                "(pin the connection to 2023-06-01 to use it)",
            )
        return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def records_from_items(items: Iterable[Any]) -> Iterator[tuple[str, Any]]:
    """Location-labelled requests from an in-memory list (XCom, templated parameter)."""
    for i, item in enumerate(items):
        yield f"request {i}", item


def records_from_jsonl(stream: IO[bytes]) -> Iterator[tuple[str, bytes]]:
    """Location-labelled raw lines from a binary JSONL stream; blank lines are skipped."""
    for number, line in enumerate(stream, start=1):
        if line.strip():
            yield f"line {number}", line


def prepare(
    records: Iterable[tuple[str, Any]],
    validator: RequestValidator,
    sink: IO[bytes],
    *,
    on_invalid: OnInvalid = "fail",
    max_reported: int = 1000,
) -> Prepared:
    """Validate, encode and stage every request, and plan the shards.

    Raises ``RequestValidationError`` listing every problem (up to ``max_reported``) when any
    request is invalid and ``on_invalid`` is "fail"; with "skip" the invalid requests are left
    out and returned in ``Prepared.rejected``.
    """
    limits = validator.limits
    digest = hashlib.sha256()
    seen: set[int] = set()
    problems: list[Problem] = []
    problem_count = 0
    shards: list[Shard] = []
    shard_first = shard_count = shard_offset = shard_length = 0
    shard_ids = IdsDigest()
    offset = accepted = 0

    for location, raw in records:
        checked = validator.check(location, raw)
        if isinstance(checked, list):
            problem_count += len(checked)
            room = max_reported - len(problems)
            problems.extend(checked[: max(room, 0)])
            continue
        custom_id, line = checked
        key = hash(custom_id)
        if key in seen:
            problem_count += 1
            if len(problems) < max_reported:
                problems.append(
                    Problem(location, custom_id, "custom_id", "is used by an earlier request")
                )
            continue
        seen.add(key)
        if problem_count and on_invalid == "fail":
            continue  # the job will not be sent: keep checking, stop staging

        size = len(line) + 1
        body_if_added = ENVELOPE_BYTES + shard_length + size - 1
        if shard_count and (shard_count >= limits.max_requests or body_if_added > limits.max_bytes):
            shards.append(
                Shard(
                    len(shards),
                    shard_first,
                    shard_count,
                    shard_offset,
                    shard_length,
                    shard_ids.hexdigest(),
                )
            )
            shard_first, shard_count, shard_offset, shard_length = accepted, 0, offset, 0
            shard_ids = IdsDigest()
        shard_ids.add(custom_id)
        chunk = line + b"\n"
        sink.write(chunk)
        digest.update(chunk)
        offset += size
        shard_length += size
        shard_count += 1
        accepted += 1

    if problem_count and on_invalid == "fail":
        raise RequestValidationError.from_problems(
            problems, problem_count, anthropic_version=validator.anthropic_version
        )
    if shard_count:
        shards.append(
            Shard(
                len(shards),
                shard_first,
                shard_count,
                shard_offset,
                shard_length,
                shard_ids.hexdigest(),
            )
        )
    if not accepted:
        if problem_count:
            raise RequestValidationError.from_problems(
                problems, problem_count, anthropic_version=validator.anthropic_version
            )
        raise RequestValidationError("the input holds no requests; nothing to submit")
    return Prepared(
        fingerprint=digest.hexdigest(),
        request_count=accepted,
        shards=shards,
        rejected=problems,
        rejected_count=problem_count,
    )


def iter_shard_body(
    open_staged: Callable[[], IO[bytes]], shard: Shard, *, chunk_size: int = 1 << 20
) -> Iterator[bytes]:
    """The create body of one shard, streamed from the staging file.

    Staged lines never contain a raw newline (JSON escapes it), so turning the separators
    into commas is a byte replacement; the body is exactly ``shard.body_bytes`` long.
    """
    yield ENVELOPE_HEAD
    remaining = shard.length - 1  # the shard's last newline is not sent
    with open_staged() as stream:
        stream.seek(shard.offset)
        while remaining > 0:
            data = stream.read(min(chunk_size, remaining))
            if not data:
                raise BatchesError(
                    f"staging file ended {remaining} bytes early while reading shard "
                    f"{shard.index}; it was changed or truncated"
                )
            remaining -= len(data)
            yield data.replace(b"\n", b",")
    yield ENVELOPE_TAIL
