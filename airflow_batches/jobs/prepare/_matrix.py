"""The model matrix: the same requests sent to several models as one logical job.

``SubmitBatchOperator(models=["claude-haiku-4-5", "claude-sonnet-4-5"])`` sends every request
once per model. Each model is a :class:`MatrixModel`: the model id sent, a *label* (how results,
scores and reports name it; the model id unless given, so the same model may appear twice
with different params) and params that override the request's own (``thinking``, ``system``,
...); ``params.model`` is always the matrix model's.

**custom_ids.** The copy of request ``q1`` for the model at position ``i`` of ``models`` is
``m{i}_q1``. A custom_id too long for the 64-character limit once prefixed (over
``63 - len("m{i}")`` characters) keeps its first 40 characters, then ``_`` and 16 hex digits of
the BLAKE2b-64 hash of the whole custom_id: ``m{i}_<40 characters>_<16 hex>``, 57 characters
after the prefix for any model, so the part after the prefix (the request's *key*) is the same
for every model. The original custom_id of a shortened one is kept in the job's sidecar
(``_sidecar``) and restored in the results (``matrix.custom_id``). A request's ``metadata``
travels with each of its copies (pre-flight hands it to the sidecar, by derived custom_id).

**Order and batches.** Each model's requests are validated and sharded on their own, as a
part of the job, parts in the order of ``models``, so no batch mixes two models: each model's
batches, follow-ups and end time are its own. Pre-flight reads the input once per group of up
to eight models, not once per model (``_fanout``). Every published result line names its
model: ``"matrix": {"model": label, "custom_id": original custom_id}``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_batches.api._request_shape import CUSTOM_ID_MAX, CUSTOM_ID_PATTERN
from airflow_batches.jobs._store import name_clash
from airflow_batches.jobs.prepare._request_files import JSON_SPACE
from airflow_batches.jobs.prepare._request_json import decode_line
from airflow_batches.jobs.prepare._sidecar import Sidecar

__all__ = [
    "CUSTOM_ID_RE",
    "MatrixModel",
    "ModelMatrix",
    "ModelPart",
    "RecordSource",
    "envelope_parts",
    "once_source",
    "request_key",
]

MAX_LABEL = 128
"""A label becomes part of file names (``split_by_model``): bounded to keep them valid."""
KEEP_CHARS = 40
HASH_HEX = 16
CUSTOM_ID_RE = re.compile(CUSTOM_ID_PATTERN)
_PREFIX = re.compile(r"m(\d{1,4})")

RecordSource = Callable[[], Iterable[tuple[str, Any]]]
"""Opens the input afresh and yields ``(location, raw request)``; a matrix job calls it once
per model."""


def request_key(custom_id: str, prefix_length: int = 0) -> str:
    """The part of a derived custom_id after ``m{i}_``: the custom_id itself when it fits in
    ``63 - prefix_length`` characters, else its shortened form (see the module docstring)."""
    if prefix_length + 1 + len(custom_id) <= CUSTOM_ID_MAX:
        return custom_id
    digest = hashlib.blake2b(custom_id.encode(), digest_size=HASH_HEX // 2).hexdigest()
    return f"{custom_id[:KEEP_CHARS]}_{digest}"


@dataclass(frozen=True)
class MatrixModel:
    """One model of a matrix: what is sent, and how it is named."""

    model: str
    label: str
    params: Mapping[str, Any] = field(default_factory=dict)
    """Params that replace the request's own for this model (``model`` excluded)."""
    prefix: str = "m0"

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "label": self.label,
            "params": dict(self.params),
            "prefix": self.prefix,
        }


class ModelMatrix:
    """The models of a matrix job, in order; built with :meth:`of`."""

    def __init__(self, models: Sequence[MatrixModel]) -> None:
        self.models = tuple(models)
        self._by_prefix = {m.prefix: m for m in self.models}
        self._by_label = {m.label: m for m in self.models}

    def __repr__(self) -> str:
        return f"ModelMatrix({[m.label for m in self.models]})"

    def __len__(self) -> int:
        return len(self.models)

    @classmethod
    def of(cls, models: Sequence[str | Mapping[str, Any]]) -> ModelMatrix:
        """From ``["model-a", {"model": "model-b", "label": "b-thinking", "params": {...}}]``.

        Raises ``ValueError`` naming the entry for a missing model, a duplicate label, or
        params that would change ``model``.
        """
        if isinstance(models, str | bytes) or not isinstance(models, Sequence):
            raise ValueError(f"models must be a list of model ids, got {type(models).__name__}")
        if not models:
            raise ValueError("models must name at least one model")
        out: list[MatrixModel] = []
        for i, entry in enumerate(models):
            where = f"models[{i}]"
            model: Any
            label: Any
            params: Any
            if isinstance(entry, str):
                model, label, params = entry, entry, {}
            elif isinstance(entry, Mapping):
                unknown = sorted(set(entry) - {"model", "label", "params"})
                if unknown:
                    raise ValueError(
                        f"{where}: unknown key(s) {unknown} (an entry is {{model, label, params}})"
                    )
                model = entry.get("model")
                label = entry.get("label") or model
                params = entry.get("params") or {}
                if not isinstance(params, Mapping):
                    raise ValueError(f"{where}.params must be an object")
                if "model" in params:
                    raise ValueError(f"{where}.params: give the model as {where}.model")
            else:
                raise ValueError(f"{where}: expected a model id or an object, got {entry!r}")
            if not isinstance(model, str) or not model:
                raise ValueError(f"{where}.model must be a non-empty string")
            if not isinstance(label, str) or not label:
                raise ValueError(f"{where}.label must be a non-empty string")
            if any(m.label == label for m in out):
                raise ValueError(
                    f"{where}: label {label!r} is used twice; give each entry its own label"
                )
            if len(label) > MAX_LABEL:
                raise ValueError(
                    f"{where}.label is {len(label)} characters long; a label names files and "
                    f"report rows, at most {MAX_LABEL} characters"
                )
            clash = name_clash([*(m.label for m in out), label])
            if clash is not None:
                other = next(j for j, m in enumerate(out) if m.label == clash[0])
                raise ValueError(
                    f"{where}: label {label!r} and models[{other}]'s {clash[0]!r} would share "
                    f"one file name ({clash[2]!r}, letters of other case and characters "
                    "outside A-Z a-z 0-9 - _ . folded); give labels that differ in more than "
                    "case and punctuation"
                )
            out.append(MatrixModel(model, label, dict(params), f"m{i}"))
        if len(out) > 10_000:
            raise ValueError("a matrix holds at most 10,000 models")
        return cls(out)

    @classmethod
    def from_json(cls, data: Sequence[Mapping[str, Any]]) -> ModelMatrix:
        return cls(
            [
                MatrixModel(d["model"], d["label"], dict(d.get("params") or {}), d["prefix"])
                for d in data
            ]
        )

    def to_json(self) -> list[dict[str, Any]]:
        return [m.to_json() for m in self.models]

    @property
    def labels(self) -> list[str]:
        return [m.label for m in self.models]

    def label(self, label: str) -> MatrixModel:
        return self._by_label[label]

    def custom_id(self, model: MatrixModel, custom_id: str) -> str:
        return f"{model.prefix}_{request_key(custom_id, len(model.prefix))}"

    def split(self, custom_id: str) -> tuple[MatrixModel, str] | None:
        """``(model, request key)`` of a derived custom_id; None if it is not one."""
        prefix, sep, key = custom_id.partition("_")
        model = self._by_prefix.get(prefix) if sep else None
        if model is None or not _PREFIX.fullmatch(prefix):
            return None
        return model, key

    def part_of(self, custom_id: str) -> str:
        """The prefix of a derived custom_id: which model's part of the job it is in."""
        return custom_id.partition("_")[0]

    # -- expanding the input ----------------------------------------------------------------

    def parts(
        self, source: RecordSource, sidecar: Sidecar | None = None
    ) -> list[Iterable[tuple[str, Any]]]:
        """One lazy stream of requests per model; only the first writes the sidecar."""
        return [
            ModelPart(self, model, source, sidecar if i == 0 else None)
            for i, model in enumerate(self.models)
        ]

    def expand(self, model: MatrixModel, raw: Any) -> tuple[Any, str | None]:
        """``(the request for model, its original custom_id)``; a request too broken to
        expand is handed on as it is, for pre-flight to name its problem."""
        if isinstance(raw, bytes | bytearray | memoryview):
            value, faults = decode_line(bytes(raw).strip(JSON_SPACE))
            if faults:
                return raw, None  # pre-flight decodes it again and names every fault
            raw = value
        if hasattr(raw, "model_dump"):
            raw = raw.model_dump(mode="json", exclude_unset=True)
        if not isinstance(raw, Mapping):
            return raw, None
        custom_id = raw.get("custom_id")
        params = raw.get("params")
        if (
            not isinstance(custom_id, str)
            or not CUSTOM_ID_RE.fullmatch(custom_id)
            or not isinstance(params, Mapping)
        ):
            return raw, None
        request = dict(raw)
        request["custom_id"] = self.custom_id(model, custom_id)
        request["params"] = {**params, **model.params, "model": model.model}
        return request, custom_id


@dataclass
class ModelPart:
    """The requests of one model, read afresh from the source each time it is iterated; the
    first model's part tells the sidecar the custom_ids it shortened."""

    matrix: ModelMatrix
    model: MatrixModel
    source: RecordSource
    sidecar: Sidecar | None

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        matrix, model, sidecar = self.matrix, self.model, self.sidecar
        suffix = f" ({model.label})"
        for location, raw in self.source():
            request, original = matrix.expand(model, raw)
            if sidecar is not None and original is not None:
                key = request_key(original, len(model.prefix))
                if key != original:
                    sidecar.original(key, original)
            yield location + suffix, request


def envelope_parts(
    source: RecordSource, sidecar: Sidecar | None, matrix: ModelMatrix | None = None
) -> list[Iterable[tuple[str, Any]]]:
    """The input as pre-flight reads it: for a matrix job one stream per model, else the
    source itself. (Metadata goes to the sidecar through pre-flight's metadata sink.)"""
    if matrix is not None:
        return matrix.parts(source, sidecar)
    return [_Once(source)]


@dataclass
class _Once:
    source: RecordSource

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return iter(self.source())


def once_source(parts: Sequence[Iterable[tuple[str, Any]]]) -> RecordSource | None:
    """The source of an input that ``envelope_parts`` gave as it is (no matrix), else None."""
    if len(parts) == 1 and isinstance(parts[0], _Once):
        return parts[0].source
    return None
