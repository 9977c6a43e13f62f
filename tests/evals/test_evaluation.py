"""The scoring pass: per-model figures, errors apart, costs, regressions, gates."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from airflow_batches.api._pricing import load_price_table
from airflow_batches.evals import Evaluation, EvaluationError, Thresholds, deltas, exact_match
from airflow_batches.evals._compare import history
from airflow_batches.evals._evaluate import load_scores
from airflow_batches.jobs._index import DiskIndex
from tests.evals import lines as L

PRICES = load_price_table()


def encode(line: dict[str, Any]) -> bytes:
    return json.dumps(line).encode()


def test_errored_expired_and_canceled_are_counted_apart_never_as_wrong() -> None:
    out = io.BytesIO()
    evaluation = Evaluation(exact_match(), PRICES, scores=out)
    meta = {"expected": "yes", "category": "c"}
    for line in [
        L.succeeded("a", "yes", metadata=meta),
        L.succeeded("b", "no", metadata=meta),
        L.succeeded("c", "?", metadata={"nothing": 1}),
        L.errored("d", metadata=meta),
        L.other("e", "expired", metadata=meta),
        L.other("f", "canceled", metadata=meta),
    ]:
        evaluation.add(encode(line))
    m = evaluation.summary()["models"]["claude-haiku-4-5"]
    assert m["counts"] == {"succeeded": 3, "errored": 1, "expired": 1, "canceled": 1}
    assert (m["scored"], m["passed"], m["failed"], m["unscored"]) == (2, 1, 1, 1)
    assert m["pass_rate"] == 0.5 and m["mean_score"] == 0.5
    assert m["categories"] == {"c": {"scored": 2, "passed": 1, "pass_rate": 0.5, "mean_score": 0.5}}
    written = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [w["custom_id"] for w in written] == list("abcdef")
    assert written[3] == {
        "custom_id": "d",
        "model": "(unknown model)",
        "type": "errored",
        "category": "c",
    }


def test_cost_per_correct_answer_counts_what_the_cache_saved() -> None:
    evaluation = Evaluation(exact_match(), PRICES)
    meta = {"expected": "yes"}
    evaluation.add(encode(L.succeeded("a", "yes", metadata=meta, label="h")))
    evaluation.add(encode(L.succeeded("b", "yes", metadata=meta, label="h", cached=True)))
    evaluation.add(encode(L.succeeded("c", "no", metadata=meta, label="h")))
    m = evaluation.summary()["models"]["h"]
    one = PRICES.get("claude-haiku-4-5")
    assert one is not None
    per_line = (100 * one.input + 10 * one.output) / 1e6 / 2  # batch prices: half
    assert m["cost_usd"] == pytest.approx(2 * per_line, abs=1e-6)
    assert m["cost_avoided_usd"] == pytest.approx(per_line, abs=1e-6)
    assert m["cost_per_correct_usd"] == pytest.approx(3 * per_line / 2, rel=1e-3)
    assert (m["cross_run_cache_hits"], m["cross_run_cache_hit_rate"]) == (
        1,
        pytest.approx(1 / 3, abs=1e-5),
    )


def _fetched(cost: float, avoided: float) -> dict[str, Any]:
    return {"cost_usd": cost, "cost_complete": True, "cache_hit_rate": 0.25,
            "cost_avoided_usd": avoided, "cost_avoided_complete": False}  # fmt: skip


def test_the_fetchs_costs_stand_for_a_model_whose_lines_are_then_not_counted_again() -> None:
    evaluation = Evaluation(exact_match(), PRICES, costs={"h": _fetched(1.5, 0.5)})
    meta = {"expected": "yes"}
    evaluation.add(encode(L.succeeded("a", "yes", metadata=meta, label="h")))
    evaluation.add(encode(L.succeeded("b", "yes", metadata=meta, label="h", cached=True)))
    evaluation.add(encode(L.succeeded("c", "yes", metadata=meta, label="k")))
    models = evaluation.summary()["models"]
    h, k = models["h"], models["k"]
    assert (h["cost_usd"], h["cost_avoided_usd"]) == (1.5, 0.5)
    assert h["cost_complete"] is False  # the avoided part was not complete
    assert h["prompt_cache_hit_rate"] == 0.25
    assert h["cost_per_correct_usd"] == pytest.approx(2.0 / 2)
    assert (h["scored"], h["cross_run_cache_hits"]) == (2, 1)  # the lines are still read
    one = PRICES.get("claude-haiku-4-5")
    assert one is not None
    assert k["cost_usd"] == pytest.approx((100 * one.input + 10 * one.output) / 1e6 / 2, abs=1e-6)
    assert evaluation.summary()["totals"]["cost_usd"] == pytest.approx(1.5 + k["cost_usd"])


def test_the_fetchs_costs_are_taken_only_when_the_same_prices_made_them() -> None:
    from airflow_batches.evals._costs import fetched_costs

    manifest = {"prices_digest": PRICES.digest(), "matrix": {"h": _fetched(1.0, 0.0)}}
    assert fetched_costs(manifest, PRICES) == {"h": _fetched(1.0, 0.0)}
    dearer = PRICES.with_overrides({"claude-haiku-4-5": {"output": 99.0}})
    assert dearer.digest() != PRICES.digest()
    assert PRICES.digest() == load_price_table().digest()  # the same table, made again
    assert fetched_costs(manifest, dearer) is None  # priced otherwise: counted again
    assert fetched_costs({**manifest, "prices_digest": None}, PRICES) is None  # an older fetch
    assert fetched_costs({"prices_digest": PRICES.digest()}, PRICES) is None  # no matrix
    partial = {k: v for k, v in _fetched(1.0, 0.0).items() if k != "cost_avoided_complete"}
    assert fetched_costs({**manifest, "matrix": {"h": partial}}, PRICES) is None
    assert (
        fetched_costs({**manifest, "matrix": {"h": partial, "g": _fetched(1, 0)}}, PRICES) is None
    )
    junks = [
        ("cost_usd", "1.0"),
        ("cost_usd", True),
        ("cost_avoided_usd", -1.0),
        ("cost_usd", float("nan")),
        ("cost_complete", 1),
        ("cache_hit_rate", "x"),
    ]
    for field, junk in junks:  # a manifest read back from storage is checked first
        bad = {**_fetched(1.0, 0.0), field: junk}
        assert fetched_costs({**manifest, "matrix": {"h": bad}}, PRICES) is None, (field, junk)


def test_a_scorer_that_raises_names_the_request() -> None:
    def broken(result: Any, metadata: Any) -> bool:
        raise KeyError("expected")

    with pytest.raises(EvaluationError, match=r"raised on 'q7'.*KeyError"):
        Evaluation(broken, PRICES).add(encode(L.succeeded("q7", "x")))
    odd = [
        b'{"custom_id": "x"}',
        b'{"custom_id": "x", "result": [1]}',
        b'{"custom_id": "x", "result": "succeeded"}',
        b'{"custom_id": "x", "result": {"message": {}}}',
        b'{"custom_id": "x", "result": {"type": "succeeded"}, "matrix": {"model": "m"}}',
        b'{"custom_id": "x", "result": [1], "matrix": {"model": "m", "custom_id": "x"}}',
        b'{"custom_id": "x", "result": {}, "matrix": {"model": "m", "custom_id": "x"}}',
    ]
    for line in odd:
        for fingerprint in (None, "f"):
            evaluation = Evaluation(exact_match(), PRICES, fingerprint=fingerprint)
            with pytest.raises(EvaluationError, match="not a result line"):
                evaluation.add(line)


def test_requests_that_lost_their_pass_are_regressions() -> None:
    before = io.BytesIO()
    first = Evaluation(exact_match(), PRICES, scores=before)
    for i, text in enumerate(["yes", "yes", "no", "yes"]):
        first.add(encode(L.succeeded(f"q{i}", text, label="m", metadata={"expected": "yes"})))
    with DiskIndex() as index:
        assert load_scores(io.BytesIO(before.getvalue()), index) == 4
        out = io.BytesIO()
        second = Evaluation(exact_match(), PRICES, baseline=index, regressions=out)
        for i, text in enumerate(["no", "yes", "yes"]):
            second.add(encode(L.succeeded(f"q{i}", text, label="m", metadata={"expected": "yes"})))
        second.add(encode(L.errored("q3", label="m")))  # not scored now: not comparable
        m = second.summary()["models"]["m"]
    assert (m["compared"], m["regressions"], m["improvements"]) == (3, 1, 1)
    (regressed,) = [json.loads(x) for x in out.getvalue().splitlines()]
    assert regressed == {
        "model": "m",
        "custom_id": "q0",
        "before": 1.0,
        "after": 0.0,
        "passed_before": True,
        "passed_after": False,
        "category": None,
    }
    assert second.examples == [regressed]


def test_deltas_and_thresholds() -> None:
    now = {
        "a": {"mean_score": 0.8, "pass_rate": 0.8, "cost_usd": 1.0, "cost_per_correct_usd": 0.1},
        "b": {"mean_score": 0.95, "pass_rate": 0.9, "cost_usd": 1.0, "cost_per_correct_usd": 0.2},
        "new": {"mean_score": 0.5, "pass_rate": 0.5},
    }
    before = {
        "a": {"mean_score": 0.9, "pass_rate": 0.9, "cost_usd": 1.0, "cost_per_correct_usd": 0.1},
        "b": {"mean_score": 0.94, "pass_rate": 0.9, "cost_usd": 2.0, "cost_per_correct_usd": None},
    }
    changes = deltas(now, before)
    assert set(changes) == {"a", "b"}
    assert changes["a"]["mean_score"] == pytest.approx(-0.1)
    assert changes["b"]["cost_usd"] == -1.0 and changes["b"]["cost_per_correct_usd"] is None
    gate = Thresholds(min_score={"new": 0.6, "*": 0.7}, max_regression=0.05)
    violations = gate.violations(now, changes)
    assert violations == [
        "a: mean_score fell by 0.1000 (from 0.9000 to 0.8000); at most 0.0500 is allowed",
        "new: mean_score 0.5000 is below the minimum 0.6000",
    ]
    assert Thresholds(max_regression=0.2).violations(now, changes) == []
    assert not Thresholds().active
    with pytest.raises(ValueError, match="metric"):
        Thresholds(metric="median")  # type: ignore[arg-type]


def test_the_history_keeps_the_last_runs_oldest_first() -> None:
    older = {"run": {"run_id": "r1"}, "models": {"m": {"pass_rate": 0.5}}, "history": []}
    newer = {
        "run": {"run_id": "r2"},
        "models": {"m": {"pass_rate": 0.6}},
        "history": history(older),
    }
    assert [h["run_id"] for h in history(newer)] == ["r1", "r2"]
    assert history(None) == []
    assert len(history({**newer, "history": history(newer) * 20}, keep=30)) == 30
