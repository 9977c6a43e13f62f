"""Last night's score for an unchanged answer (``evals/_reuse``), through ``evaluate_job``.

Two nights of published lines in real folders: the second night takes the first night's score
only where the answer, the metadata and the scorer (with its settings) are all the same, and
scores everything else again; a scorer of the user's own is trusted only with a ``version``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from airflow_batches.api._pricing import load_price_table
from airflow_batches.evals import (
    Baseline,
    EvalSettings,
    by_category,
    contains,
    evaluate_job,
    exact_match,
    json_schema,
    numeric,
    regex,
)
from airflow_batches.evals._reuse import answer_digest, scorer_fingerprint
from tests.evals import lines as L

PRICES = load_price_table()
MANIFEST = {"job_id": "j", "matrix": {"a": {"batch_ids": ["b1"]}}}


def night(
    folder: Path,
    lines: list[dict[str, Any]],
    scorer: Any,
    baseline: Path | None = None,
    **settings: Any,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Evaluate ``lines`` into ``folder``; the summary and the score lines by custom_id."""
    results = L.write(folder / "results.jsonl", lines)
    summary = evaluate_job(
        MANIFEST,
        EvalSettings(scorer, PRICES, **settings),
        output=folder,
        result_files=[results],
        baseline=Baseline.load(baseline) if baseline else None,
    )
    scores = [json.loads(x) for x in (folder / "scores.jsonl").read_text().splitlines()]
    return summary, {s["custom_id"]: s for s in scores}


def questions(answers: dict[str, str], **metadata: Any) -> list[dict[str, Any]]:
    return [
        L.succeeded(q, text, label="a", metadata={"expected": "4", "category": "math", **metadata})
        for q, text in answers.items()
    ]


class Counting:
    """A scorer of the user's own that counts its calls (``version`` set or not)."""

    def __init__(self, version: str | None = None) -> None:
        self.calls = 0
        if version is not None:
            self.version = version

    def __call__(self, result: Any, metadata: Any) -> Any:
        self.calls += 1
        return {"score": result.text.strip() == metadata["expected"], "why": "compared"}


def test_an_unchanged_answer_takes_last_nights_score_and_a_changed_one_is_scored(
    tmp_path: Path,
) -> None:
    first = questions({"q1": "4", "q2": "5", "q3": "4"})
    summary1, scores1 = night(tmp_path / "n1", first, numeric())
    assert summary1["scorer_fingerprint"] and all(len(s["digest"]) == 32 for s in scores1.values())
    assert not any(s.get("reused") for s in scores1.values())

    # Night 2: q1 and q2 as the cache gives them again, q3's answer changed, q4 new.
    second = questions({"q1": "4", "q2": "5", "q3": "3", "q4": "4"})
    for line in second[:2]:
        line["cached_from"] = {"batch_id": "msgbatch_old", "custom_id": line["custom_id"]}
    summary2, scores2 = night(tmp_path / "n2", second, numeric(), baseline=tmp_path / "n1")
    assert {q: bool(s.get("reused")) for q, s in scores2.items()} == {
        "q1": True, "q2": True, "q3": False, "q4": False,
    }  # fmt: skip
    for q in ("q1", "q2"):  # the score, its details and the digest are last night's
        for field in ("score", "passed", "details", "digest", "category"):
            assert scores2[q][field] == scores1[q][field], (q, field)
        assert scores2[q]["cached"] is True
    assert scores2["q3"]["passed"] is False and scores2["q3"]["digest"] != scores1["q3"]["digest"]
    model = summary2["models"]["a"]
    assert (model["scores_reused"], model["compared"], model["regressions"]) == (2, 3, 1)
    assert summary2["regressions"]["examples"][0]["custom_id"] == "q3"
    assert (model["scored"], model["passed"]) == (4, 2)


def test_changed_metadata_or_settings_score_again(tmp_path: Path) -> None:
    lines = questions({"q1": "4", "q2": "4"})
    night(tmp_path / "n1", lines, exact_match())
    # The expected answer was corrected: the same answer is judged again, and now fails.
    fixed = questions({"q1": "4", "q2": "4"})
    fixed[1]["metadata"]["expected"] = "four"
    _, scores = night(tmp_path / "n2", fixed, exact_match(), baseline=tmp_path / "n1")
    assert scores["q1"].get("reused") is True
    assert scores["q2"].get("reused") is not True and scores["q2"]["passed"] is False
    # Another setting of the scorer, another pass threshold, another group_by: all again.
    for scorer, settings in (
        (exact_match(case_sensitive=True), {}),
        (exact_match(), {"pass_threshold": 0.5}),
        (exact_match(), {"group_by": None}),
    ):
        _, scores = night(tmp_path / "n3", lines, scorer, baseline=tmp_path / "n1", **settings)
        assert not any(s.get("reused") for s in scores.values()), (scorer, settings)
    # reuse_scores=False scores everything, with the same verdicts.
    _, scores = night(tmp_path / "n4", lines, exact_match(), baseline=tmp_path / "n1",
                      reuse_scores=False)  # fmt: skip
    assert not any(s.get("reused") for s in scores.values())
    assert [s["passed"] for s in scores.values()] == [True, True]


def test_a_users_scorer_is_trusted_only_with_a_version(tmp_path: Path) -> None:
    lines = questions({"q1": "4", "q2": "5"})
    unversioned = Counting()
    summary, scores = night(tmp_path / "n1", lines, unversioned)
    assert summary["scorer_fingerprint"] is None and "digest" not in scores["q1"]
    night(tmp_path / "n2", lines, unversioned, baseline=tmp_path / "n1")
    assert unversioned.calls == 4  # every line, both nights

    v1 = Counting("1")
    night(tmp_path / "v1", lines, v1)
    again = Counting("1")
    _, scores = night(tmp_path / "v1b", lines, again, baseline=tmp_path / "v1")
    assert (v1.calls, again.calls) == (2, 0)
    assert scores["q1"]["details"] == {"why": "compared"} and scores["q1"]["reused"] is True
    v2 = Counting("2")  # the user changed it and said so
    night(tmp_path / "v2", lines, v2, baseline=tmp_path / "v1")
    assert v2.calls == 2
    # A built-in dispatching to an unversioned scorer of the user's is not vouched for.
    assert scorer_fingerprint(by_category({"math": Counting()}), pass_threshold=1,
                              group_by="category") is None  # fmt: skip


def test_fingerprints_name_every_setting() -> None:
    def fp(scorer: Any, **settings: Any) -> str | None:
        return scorer_fingerprint(
            scorer, pass_threshold=settings.get("t", 1.0), group_by=settings.get("g", "category")
        )

    same = [
        (exact_match(), exact_match()),
        (json_schema({"type": "object"}), json_schema({"type": "object"})),
        (regex("a+"), regex("a+")),
        (by_category({"x": numeric()}), by_category({"x": "numeric"})),
    ]
    for a, b in same:
        assert fp(a) is not None and fp(a) == fp(b), a
    different = [
        (exact_match(), exact_match(case_sensitive=True)),
        (exact_match(), contains()),
        (json_schema({"type": "object"}), json_schema({"type": "array"})),
        (regex("a+"), regex("a+", flags=re.IGNORECASE)),
        (numeric(), numeric(abs_tol=0.1)),
        (by_category({"x": numeric()}), by_category({"x": exact_match()})),
    ]
    for a, b in different:
        assert fp(a) != fp(b), (a, b)
    assert fp(exact_match()) != fp(exact_match(), t=0.5)
    assert fp(exact_match()) != fp(exact_match(), g=None)


@pytest.mark.parametrize(
    ("line", "same_as_first"),
    [
        (b'{"custom_id":"x","result":{"type":"succeeded","a":1},"metadata":{"e":1}}', True),
        # Other members (custom_id, matrix, cached_from) do not change the answer's digest.
        (
            b'{"cached_from":{},"result":{"type":"succeeded","a":1},"custom_id":"y",'
            b'"metadata":{"e":1}}',
            True,
        ),
        (b'{"custom_id":"x","result":{"type":"succeeded","a":2},"metadata":{"e":1}}', False),
        (b'{"custom_id":"x","result":{"type":"succeeded","a":1},"metadata":{"e":2}}', False),
        (b'{"custom_id":"x","result":{"type":"succeeded","a":1}}', False),
    ],
)
def test_the_digest_is_the_answer_and_the_metadata(line: bytes, same_as_first: bool) -> None:
    first = answer_digest(
        b'{"custom_id":"x","result":{"type":"succeeded","a":1},"metadata":{"e":1}}'
    )
    assert first is not None and (answer_digest(line) == first) is same_as_first
    assert answer_digest(b"not json") is None


@pytest.mark.parametrize(
    "digest",
    ["ab" * 15 + " c", "ab" * 15 + "\tc", " " + "a" * 31, "+" + "a" * 31, "zz" * 16, "ab" * 17,
     "", "ÀB" * 16, "a" * 30 + "\u0660\u0661", "ab" * 8 + " " * 16],
)  # fmt: skip
def test_a_digest_that_is_not_ours_is_compared_never_reused(digest: str) -> None:
    from airflow_batches.evals._scorelines import PACKED, score_entries

    line = {"custom_id": "q", "model": "a", "type": "succeeded", "score": 1.0, "passed": True,
            "details": {"x": 1}, "digest": digest}  # fmt: skip
    [(_, packed)] = score_entries([json.dumps(line).encode()])
    assert packed == PACKED.pack(1.0, True)  # the score, for the comparison; nothing to reuse


@pytest.mark.parametrize(
    ("details", "kept"),
    [({"x": 1, "why": 'a\\u00e9"}'}, True), (None, False), ([1, 2], False), ("text", False)],
)
def test_a_reused_score_carries_last_nights_details_only_when_they_are_an_object(
    details: Any, kept: bool
) -> None:
    from airflow_batches.evals._scorelines import PACKED, same_answer, score_entries

    digest = "ab" * 16
    line = {"custom_id": "q", "model": "a", "type": "succeeded", "score": 0.5, "passed": False,
            "details": details, "digest": digest}  # fmt: skip
    [(_, packed)] = score_entries([json.dumps(line).encode()])
    taken = same_answer(packed, bytes.fromhex(digest))
    assert taken is not None
    score, raw = taken
    assert (score.score, score.passed) == (0.5, False)
    assert packed[: PACKED.size] == PACKED.pack(0.5, False)
    # The details go into tonight's score line as last night wrote them: valid JSON, an object.
    assert (json.loads(raw) == details) if kept else raw == b""
    assert same_answer(packed, bytes.fromhex("cd" * 16)) is None  # another answer: scored


@pytest.mark.parametrize("separators", [(",", ":"), (", ", ": ")])
def test_a_forged_baseline_score_never_makes_an_errored_answer_succeed(
    tmp_path: Path, separators: tuple[str, str]
) -> None:
    # Last night's scores.jsonl claims a pass for the very bytes of tonight's errored result:
    # the kind is still read from tonight's line, so the line stays errored and unscored.
    meta = {"expected": "4", "category": "math"}

    def evaluate(folder: Path, lines: list[dict[str, Any]], baseline: Path | None) -> Any:
        folder.mkdir()
        results = folder / "results.jsonl"
        results.write_text("".join(json.dumps(x, separators=separators) + "\n" for x in lines))
        return evaluate_job(
            MANIFEST,
            EvalSettings(numeric(), PRICES),
            output=folder,
            result_files=[results],
            baseline=Baseline.load(baseline) if baseline else None,
        )

    q1 = L.succeeded("q1", "4", label="a", metadata=meta)
    evaluate(tmp_path / "n1", [q1, L.succeeded("q2", "4", label="a", metadata=meta)], None)
    errored = L.errored("q2", label="a", metadata=meta)
    forged = answer_digest(json.dumps(errored, separators=separators).encode())
    assert forged is not None
    scores = tmp_path / "n1" / "scores.jsonl"
    kept = [json.loads(x) for x in scores.read_text().splitlines()]
    for entry in kept:
        if entry["custom_id"] == "q2":
            entry["digest"] = forged.hex()
    scores.write_text("".join(json.dumps(x) + "\n" for x in kept))
    summary = evaluate(tmp_path / "n2", [q1, errored], tmp_path / "n1")
    tonight = (tmp_path / "n2" / "scores.jsonl").read_text().splitlines()
    lines = {x["custom_id"]: x for x in map(json.loads, tonight)}
    assert lines["q2"]["type"] == "errored" and "score" not in lines["q2"]
    assert not lines["q2"].get("reused")
    assert lines["q1"]["reused"] is True and lines["q1"]["passed"] is True
    figures = summary["models"]["a"]
    assert figures["counts"]["errored"] == 1 and figures["counts"]["succeeded"] == 1
    assert (figures["scored"], figures["scores_reused"]) == (1, 1)
