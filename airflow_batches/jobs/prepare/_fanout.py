"""A model matrix staged in one pass over the input.

``ModelMatrix.parts`` describes a matrix job as one stream per model, and pre-flight stages
each model's copies as a part of their own (its batches never mix models). Read that way, the
input would be read, decoded and checked once per model. Here it is read once per group of up
to :data:`GROUP` models: each request is decoded and its envelope judged once
(``RequestValidator.read``), then each model's copy is judged and encoded
(``RequestValidator.judge``) and staged into that model's stream. The first stream of a group
goes straight to the staging file, the others to local temporary files appended after it
once the group is read, so the staged file, its shards and its fingerprint are those of the
part-by-part reading, byte for byte, and so are the problems reported, in the same order.

Uniqueness is judged per request key (the part of a derived custom_id after ``m{i}_``, the
same for every model of a group): one set of keys for the requests whose every copy passed,
and one per model for those only some copies of which passed (rare: a model rule refusing
one model), so memory holds 16 bytes per request, not per copy.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from typing import IO, Any

from airflow_batches.api._envelope import dump_member
from airflow_batches.jobs.prepare._blocks import Output, Staging
from airflow_batches.jobs.prepare._matrix import (
    CUSTOM_ID_RE,
    MatrixModel,
    ModelMatrix,
    ModelPart,
    RecordSource,
    request_key,
)
from airflow_batches.jobs.prepare._problems import Problem
from airflow_batches.jobs.prepare._shards import CustomIds, OnInvalid, Part, Prepared, id_digest
from airflow_batches.jobs.prepare._sidecar import Sidecar
from airflow_batches.jobs.prepare._validate import Read, RequestValidator, plain_json

__all__ = ["GROUP", "MatrixInput", "matrix_input", "prepare_matrix"]

GROUP = 8
"""Models staged per pass over the input (each holds a block of about 1 MiB in memory)."""


@dataclasses.dataclass(frozen=True)
class MatrixInput:
    """A matrix job's input as ``ModelMatrix.parts`` gave it: one source for every model."""

    matrix: ModelMatrix
    source: RecordSource
    sidecar: Sidecar | None


def matrix_input(parts: Sequence[Iterable[tuple[str, Any]]]) -> MatrixInput | None:
    """The matrix job that ``parts`` are the model streams of, in order; None if they are
    anything else (then they are staged part by part)."""
    if not parts or not all(isinstance(p, ModelPart) for p in parts):
        return None
    first: ModelPart = parts[0]  # type: ignore[assignment]
    matrix, source = first.matrix, first.source
    if len(parts) != len(matrix.models) or any(
        p.matrix is not matrix  # type: ignore[attr-defined]
        or p.source is not source  # type: ignore[attr-defined]
        or p.model is not model  # type: ignore[attr-defined]
        or (i > 0 and p.sidecar is not None)  # type: ignore[attr-defined]
        for i, (p, model) in enumerate(zip(parts, matrix.models, strict=True))
    ):
        return None
    return MatrixInput(matrix, source, first.sidecar)


def prepare_matrix(
    job: MatrixInput,
    validator: RequestValidator,
    sink: IO[bytes],
    *,
    on_invalid: OnInvalid = "fail",
    max_reported: int = 1000,
) -> list[Prepared]:
    """Each model's part of the job, staged one after the other into ``sink`` (see the module
    docstring); raises as ``prepare`` would for the first part that fails."""
    prepared: list[Prepared] = []
    for i, group in enumerate(_groups(job.matrix.models)):
        sidecar = job.sidecar if i == 0 else None
        prepared.extend(_one_pass(job, group, sidecar, validator, sink, on_invalid, max_reported))
    return prepared


def _groups(models: Sequence[MatrixModel]) -> list[list[MatrixModel]]:
    """Runs of at most ``GROUP`` models whose prefixes have one length (one request key)."""
    groups: list[list[MatrixModel]] = []
    for model in models:
        last = groups[-1] if groups else None
        if last and len(last) < GROUP and len(last[0].prefix) == len(model.prefix):
            last.append(model)
        else:
            groups.append([model])
    return groups


def _one_pass(
    job: MatrixInput,
    models: list[MatrixModel],
    sidecar: Sidecar | None,
    validator: RequestValidator,
    sink: IO[bytes],
    on_invalid: OnInvalid,
    max_reported: int,
) -> list[Prepared]:
    group = _Group(models, validator, on_invalid, max_reported)
    with ExitStack() as stack:
        staging = stack.enter_context(Staging())
        files = [stack.enter_context(_spill()) for _ in models[1:]]
        group.outs = [staging.output(sink), *(staging.output(f) for f in files)]
        if job.sidecar is not None:  # its metadata entries model by model, as the requests
            job.sidecar.hold_back(model.prefix for model in models[1:])
        for location, raw in job.source():
            group.request(location, raw, sidecar)
        if job.sidecar is not None:
            job.sidecar.release()
        fingerprints = staging.close(*group.outs)
        done = [
            part.finish(fingerprint, validator.anthropic_version)
            for part, fingerprint in zip(group.parts, fingerprints, strict=True)
        ]
        for spilled in files:
            spilled.seek(0)
            shutil.copyfileobj(spilled, sink, 1 << 20)
    return done


class _Group:
    """The models of one pass: each one's part, stream, label, and what its copies need."""

    def __init__(
        self,
        models: list[MatrixModel],
        validator: RequestValidator,
        on_invalid: OnInvalid,
        max_reported: int,
    ) -> None:
        self.models = models
        self.validator = validator
        self.parts = [Part(validator.limits, on_invalid, max_reported) for _ in models]
        self.outs: list[Output] = []
        self.labels = [f" ({model.label})" for model in models]
        self.plain = [plain_json(model.params) for model in models]
        self.members = [dump_member("model", model.model) for model in models]
        self.prefix_length = len(models[0].prefix)
        self.every = CustomIds()  # keys of the requests every copy of which was accepted
        self.some: list[CustomIds | None] = [None] * len(models)  # per model: of the others
        self._partly = False  # whether any request had only some of its copies accepted

    def request(self, location: str, raw: Any, sidecar: Sidecar | None) -> None:
        """Read one request, then judge and stage each model's copy of it."""
        got = self.validator.read(location, raw)
        if not isinstance(got, Read):
            for part, label in zip(self.parts, self.labels, strict=True):
                part.reject([_at(problem, location + label) for problem in got])
            return
        cid = got.custom_id
        if cid is None or not CUSTOM_ID_RE.fullmatch(cid):
            # Not expanded (as ``ModelMatrix.expand`` leaves it): its problems, per model.
            for part, label in zip(self.parts, self.labels, strict=True):
                problems = self.validator.judge(location + label, got, got.params, cid, None)
                assert isinstance(problems, list)
                part.reject(problems)
            return
        key = request_key(cid, self.prefix_length)
        if sidecar is not None and key != cid:
            sidecar.original(key, cid)
        self._stage(location, key, self._judge(location, got, key))

    def _judge(self, location: str, got: Read, key: str) -> list[tuple[str, bytes] | None]:
        """Each model's copy judged: ``(custom_id, line)``, or None (its problems reported)."""
        validator, params = self.validator, got.params
        shared = validator.shared(got)
        checked: list[tuple[str, bytes] | None] = []
        for i, model in enumerate(self.models):
            where, cid = location + self.labels[i], f"{model.prefix}_{key}"
            if shared is not None and not model.params:
                result = validator.copy(where, got, shared, cid, model.model, self.members[i])
            else:
                copy = {**params, **model.params, "model": model.model}
                result = validator.judge(where, got, copy, cid, None, self.plain[i])
            if isinstance(result, list):
                self.parts[i].reject(result)
                checked.append(None)
            else:
                checked.append(result)
        return checked

    def _stage(self, location: str, key: str, checked: list[tuple[str, bytes] | None]) -> None:
        """Stage the copies that passed, each once per model (see the module docstring)."""
        digest = id_digest(key)
        if None not in checked and not self._partly and self.every.add_digest(digest):
            # The common case: a new request, every copy accepted.
            for passed, part, out in zip(checked, self.parts, self.outs, strict=True):
                custom_id, line = passed  # type: ignore[misc]
                if part.accept(id_digest(custom_id), len(line) + 1):
                    out.add(line)
            return
        every = digest in self.every
        whole = not every and None not in checked
        fresh: list[tuple[int, str, bytes]] = []
        for i, passed in enumerate(checked):
            if passed is None:
                continue
            seen = self.some[i]
            if every or (seen is not None and digest in seen):
                self.parts[i].duplicate(location + self.labels[i], passed[0])
                whole = False
            else:
                fresh.append((i, *passed))
        if whole:
            self.every.add_digest(digest)
        for i, custom_id, line in fresh:
            if not whole:
                seen = self.some[i]
                if seen is None:
                    seen = self.some[i] = CustomIds()
                    self._partly = True
                seen.add_digest(digest)
            if self.parts[i].accept(id_digest(custom_id), len(line) + 1):
                self.outs[i].add(line)


def _at(problem: Problem, location: str) -> Problem:
    return dataclasses.replace(problem, location=location)


def _spill() -> IO[bytes]:
    return tempfile.TemporaryFile(prefix="airflow-batches-part-")
