"""Scoring a job's published results in one pass, in constant memory.

:class:`Evaluation` reads result lines as the fetch published them (``metadata`` and, for a
model-matrix job, ``matrix`` joined on), scores each succeeded one with the scorer, writes one
line per request to ``scores.jsonl``, and folds per-model totals: counts by result type, scored
/ passed / mean score, per category, usage and cost (what the job paid, and what the cross-run
cache saved: ``_costs``, the fetch's figures when they can stand). Errored, expired and
canceled requests are counted apart and never scored. With a baseline (the previous run's
``scores.jsonl``, read alongside this run's lines by a ``Lookahead``: both are in about the
job's order; or loaded into a ``DiskIndex``), each request's score is compared with its
previous one: requests that lost their pass, or some score, are *regressions*, written to
``regressions.jsonl`` (the first ``max_examples`` kept for the summary and the report). An
answer the baseline scored, unchanged since under the same scorer, takes the baseline's score
instead of being scored again (``_reuse``).

Memory: one line at a time, the totals (per model, per category), the first regressions, and
the baseline's entries read ahead (bounded; past the bound, an index on disk).

``scores.jsonl`` lines (``_scorelines.ScoreLine``): ``{"custom_id", "model", "type", "score",
"passed", "cached", "category", "details", "digest", "reused"}``, where ``custom_id`` is the
request's own (without a matrix prefix) and ``score``/``passed`` are absent for requests not
scored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any

import msgspec

from airflow_batches.api import BatchesError
from airflow_batches.api._pricing import PriceTable
from airflow_batches.evals._costs import ModelCosts
from airflow_batches.evals._reuse import members_digest
from airflow_batches.evals._scorelines import (
    PACKED,
    ScoreLine,
    entry_key,
    load_scores,
    same_answer,
    score_entries,
)
from airflow_batches.evals._scorers import (
    EvalResult,
    Score,
    Scorer,
    ScorerError,
    is_mapping,
    to_score,
)
from airflow_batches.evals._tallies import RESULT_TYPES, ModelTally, ScoreTally
from airflow_batches.jobs import DiskIndex, Lookahead, decode_deep

__all__ = ["Evaluation", "EvaluationError", "ScoreLine", "load_scores", "score_entries"]

UNKNOWN_MODEL = "(unknown model)"
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


class _Head(msgspec.Struct):
    """What an evaluation reads of every published line; the answer and the metadata stay
    bytes until they are needed (an answer whose score is reused is never decoded)."""

    custom_id: Any
    result: msgspec.Raw
    metadata: msgspec.Raw = msgspec.Raw(b"")
    matrix: Any = None
    cached_from: msgspec.Raw = msgspec.Raw(b"")
    """Empty when the line has none (it was not answered by the cross-run cache)."""


class _Kind(msgspec.Struct):
    type: Any


_decode_head = msgspec.json.Decoder(_Head).decode
_decode_kind = msgspec.json.Decoder(_Kind).decode
_SUCCEEDED = b'{"type":"succeeded",'
TOO_DEEP = (
    "the line nests arrays or objects deeper than Python's parser can go, so its answer "
    "cannot be handed to a scorer; published as the API sent it, not scored"
)


class EvaluationError(BatchesError):
    """A line could not be scored (the scorer raised, or returned no score)."""


class Evaluation:
    """See the module docstring. ``add`` every published line, then read :meth:`summary`.

    :param scorer: ``(result, metadata) -> score`` (``_scorers``).
    :param scores: where ``scores.jsonl`` lines go (None: nowhere).
    :param regressions: where ``regressions.jsonl`` lines go (None: nowhere).
    :param baseline: the previous run's scores (:func:`load_scores`), or None.
    :param default_model: the model of lines that name none (a job without a matrix: its only
        model), else :data:`UNKNOWN_MODEL`.
    :param group_by: the metadata field whose value breaks the figures down (a category).
    :param fingerprint: the scorer's (``_reuse.scorer_fingerprint``): each scored line's
        answer digest is written beside its score. None: no digests.
    :param reuse: take the baseline's score for an answer with the baseline's digest (the
        caller checked that the baseline's scorer has ``fingerprint``).
    """

    def __init__(
        self,
        scorer: Scorer,
        prices: PriceTable,
        *,
        scores: IO[bytes] | None = None,
        regressions: IO[bytes] | None = None,
        baseline: Lookahead | DiskIndex | None = None,
        pass_threshold: float = 1.0,
        default_model: str | None = None,
        group_by: str | None = "category",
        max_examples: int = 50,
        tolerance: float = 1e-9,
        fingerprint: str | None = None,
        reuse: bool = False,
        costs: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.scorer = scorer
        self.prices = prices
        self.scores_out = scores
        self.regressions_out = regressions
        self.baseline = baseline
        self._before = (
            None
            if baseline is None
            else baseline.take
            if isinstance(baseline, Lookahead)
            else baseline.get
        )
        self.pass_threshold = pass_threshold
        self.default_model = default_model or UNKNOWN_MODEL
        self.group_by = group_by
        self.max_examples = max_examples
        self.tolerance = tolerance
        self.fingerprint = fingerprint
        self.reuse = reuse and fingerprint is not None and self._before is not None
        self.costs = costs or {}
        self.models: dict[str, ModelTally] = {}
        self.examples: list[dict[str, Any]] = []
        self.lines = 0

    def _model(self, label: str) -> ModelTally:
        model = self.models.get(label)
        if model is None:
            given = self.costs.get(label)
            model = self.models[label] = ModelTally(ModelCosts(self.prices, given))
        return model

    def add(self, line: bytes) -> ScoreLine:
        """Score one published result line; returns what was written to ``scores.jsonl``."""
        try:
            try:
                head, cut = _decode_head(line), False
            except RecursionError:  # nested too deep: its shallow copy
                head, cut = decode_deep(_decode_head, line)
            custom_id, matrix = str(head.custom_id), head.matrix
            result: Any = None  # decoded once, and only when it is scored or names the model
            if is_mapping(matrix):
                label, request_id = str(matrix["model"]), str(matrix["custom_id"])
            else:
                result = _decode(head.result)
                kind = str(result["type"])
                message = result.get("message")
                named = message.get("model") if is_mapping(message) else None
                label = str(named or self.default_model)
                request_id = custom_id
            before = None if self._before is None else self._before(entry_key(label, request_id))
            digest = (
                None
                if self.fingerprint is None or cut
                else members_digest(head.result, head.metadata)
            )
            taken = same_answer(before, digest) if self.reuse and digest is not None else None
            if result is None:  # a matrix line: its kind is not read yet
                if taken is not None and memoryview(head.result)[: len(_SUCCEEDED)] == _SUCCEEDED:
                    kind = "succeeded"  # the very bytes the baseline scored
                elif self.reuse:  # most answers are last night's: the kind alone, no full decode
                    kind = str(_decode_kind(head.result).type)
                else:
                    result = _decode(head.result)
                    kind = str(result["type"])
            metadata = _decode(head.metadata) if head.metadata else None
        except (msgspec.DecodeError, KeyError, TypeError) as exc:
            raise EvaluationError(f"not a result line ({exc}): {line[:120]!r}") from None
        self.lines += 1
        model = self.models.get(label) or self._model(label)
        model.counts[kind] = model.counts.get(kind, 0) + 1
        cached = bool(head.cached_from)
        if model.costs.counting and kind in RESULT_TYPES:
            model.costs.add(line, cached=cached)
        model.cached += cached
        category = None
        if self.group_by is not None and is_mapping(metadata):
            value = metadata.get(self.group_by)
            category = None if value is None else str(value)
        out = ScoreLine(request_id, label, kind, cached=cached, category=category)
        if kind == "succeeded":
            details: bytes = b""
            if taken is not None:  # a score taken from the baseline is of a succeeded answer
                (score, details), why, out.reused = taken, None, True
                model.reused += 1
            elif cut:
                score, why = None, TOO_DEEP
            else:
                answer = EvalResult(
                    _decode(head.result) if result is None else result,
                    custom_id=request_id,
                    model=label,
                )
                score, why = self._score(answer, metadata)
            out.digest = None if digest is None else digest.hex()
            if why is not None:
                out.details = {"unscorable": why}
            if score is None:
                model.unscored += 1
            else:
                group = model.groups.get(category)
                if group is None:
                    group = model.groups[category] = ScoreTally()
                group.add(score)
                out.score, out.passed = score.score, score.passed
                out.details = msgspec.Raw(details) if details else score.details
        if out.reused:  # the baseline's own score: compared, neither worse nor better
            model.compared += 1
        elif self.baseline is not None:
            self._compare(model, out, before)
        if self.scores_out is not None:
            self.scores_out.write(_encode(out) + b"\n")
        return out

    def _score(self, result: EvalResult, metadata: Any) -> tuple[Score | None, str | None]:
        """The score, or None and, when the answer could not be scored at all, why."""
        try:
            value = self.scorer(result, metadata)
            return to_score(value, pass_threshold=self.pass_threshold), None
        except RecursionError:
            # The answer nests too deep for what the scorer does with it (a deep tool input):
            # a fact of this answer, not a fault of the evaluation.
            return None, (
                f"the scorer {self.scorer!r} ran out of recursion on this answer (it nests too "
                "deep); not scored"
            )
        except ScorerError as exc:
            raise EvaluationError(f"scoring {result.custom_id!r} ({result.model}): {exc}") from exc
        except Exception as exc:
            raise EvaluationError(
                f"the scorer {self.scorer!r} raised on {result.custom_id!r} ({result.model}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _compare(self, model: ModelTally, now: ScoreLine, packed: bytes | None) -> None:
        if not packed or now.score is None or now.passed is None:
            return
        before, passed_before = PACKED.unpack_from(packed)
        model.compared += 1
        worse = (passed_before and not now.passed) or now.score < before - self.tolerance
        better = (now.passed and not passed_before) or now.score > before + self.tolerance
        if worse:
            model.regressions += 1
            entry = {
                "model": now.model,
                "custom_id": now.custom_id,
                "before": before,
                "after": now.score,
                "passed_before": passed_before,
                "passed_after": now.passed,
                "category": now.category,
            }
            if self.regressions_out is not None:
                self.regressions_out.write(_encode(entry) + b"\n")
            if len(self.examples) < self.max_examples:
                self.examples.append(entry)
        elif better:
            model.improvements += 1

    # -- figures -----------------------------------------------------------------------------

    def summary(self, order: list[str] | None = None) -> dict[str, Any]:
        """Per-model figures (in ``order``, then by name), and the totals.

        Lines that name no model (a job without a matrix: errored, expired and canceled
        lines carry no ``message.model``) count for the job's only model when there is one."""
        unknown = self.models.get(UNKNOWN_MODEL)
        known = [m for label, m in self.models.items() if label != UNKNOWN_MODEL]
        if unknown is not None and len(known) == 1 and not unknown.scores.scored:
            known[0].merge(unknown)
            del self.models[UNKNOWN_MODEL]
        labels = [m for m in order or () if m in self.models]
        labels += sorted(m for m in self.models if m not in labels)
        compared = self.baseline is not None
        models = {label: self.models[label].figures(compared=compared) for label in labels}
        total = ScoreTally.sum(m.scores for m in self.models.values())
        cost = sum(f["cost_usd"] for f in models.values())
        avoided = sum(f["cost_avoided_usd"] for f in models.values())
        return {
            "lines": self.lines,
            "models": models,
            "totals": {
                **total.figures(),
                "cost_usd": round(cost, 6),
                "cost_avoided_usd": round(avoided, 6),
                "regressions": sum(m.regressions for m in self.models.values()),
            },
        }


LineSource = Callable[[], Iterator[bytes]]
