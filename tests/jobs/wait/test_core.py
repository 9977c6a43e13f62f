"""The wait core on its own (an injected clock, no sleeping), then both loops over it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from airflow_batches.api import (
    APIConnectionError,
    BadRequestError,
    MessageBatch,
    NotFoundError,
    OverloadedError,
    RateLimitError,
)
from airflow_batches.jobs.wait import (
    WaitCore,
    WaitEvent,
    WaitSettings,
    wait_in_triggerer,
    wait_in_worker,
)
from airflow_batches.jobs.wait._core import Answer

LOG = logging.getLogger("test.wait")


def batch(batch_id: str, status: str = "in_progress", n: int = 2) -> MessageBatch:
    ended = status == "ended"
    return MessageBatch.model_validate(
        {
            "id": batch_id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": {
                "processing": 0 if ended else n,
                "succeeded": n if ended else 0,
                "errored": 0,
                "canceled": 0,
                "expired": 0,
            },
            "created_at": datetime(2026, 12, 1, tzinfo=UTC),
            "expires_at": datetime(2026, 12, 2, tzinfo=UTC),
            "ended_at": datetime(2026, 12, 1, 1, tzinfo=UTC) if ended else None,
            "results_url": f"https://x/{batch_id}/results" if ended else None,
        }
    )


def status_error(cls: type, status: int, retry_after: float | None = None) -> Any:
    return cls("boom", status_code=status, retry_after=retry_after)


def settings(**kw: Any) -> WaitSettings:
    base: dict[str, Any] = {
        "poke_interval": 10.0,
        "max_poke_interval": 40.0,
        "backoff_factor": 2.0,
        "max_transient_errors": 2,
        "started_at": 1000.0,
    }
    return WaitSettings(**{**base, **kw})


def test_the_interval_grows_to_its_cap_while_work_is_left() -> None:
    core = WaitCore.of(["a"], settings())
    waits = [core.observe({"a": batch("a")}, 1000.0 + i).seconds for i in range(5)]
    assert waits == [10.0, 20.0, 40.0, 40.0, 40.0]


def test_ended_when_every_batch_has_ended_even_across_rounds() -> None:
    core = WaitCore.of(["a", "b", "a"], settings())
    assert core.batch_ids == ["a", "b"]
    step = core.observe({"a": batch("a", "ended"), "b": batch("b")}, 1001.0)
    assert step.action == "sleep"
    assert core.pending() == ["b"]
    step = core.observe({"b": batch("b", "ended")}, 1002.0)
    assert step.action == "ended"
    event = core.event(step, 1005.0)
    assert event.status == "ended"
    assert [b.id for b in event.batches] == ["a", "b"]
    assert event.elapsed == 5.0


def test_transient_errors_are_counted_reset_and_then_fatal() -> None:
    core = WaitCore.of(["a"], settings())
    step = core.observe({"a": APIConnectionError("reset")}, 1001.0)
    assert (step.action, core.errors) == ("sleep", 1)
    assert step.warning is not None and "attempt 1 of 2" in step.warning
    core.observe({"a": batch("a")}, 1002.0)
    assert core.errors == 0
    for _ in range(2):
        assert core.observe({"a": status_error(OverloadedError, 529)}, 1003.0).action == "sleep"
    step = core.observe({"a": status_error(OverloadedError, 529)}, 1004.0)
    assert step.action == "failed"
    assert "3 consecutive polls failed" in step.message


def test_a_failed_round_keeps_the_answers_that_came_back() -> None:
    core = WaitCore.of(["a", "b"], settings())
    core.observe({"a": batch("a", "ended"), "b": APIConnectionError("cut")}, 1001.0)
    assert core.pending() == ["b"]
    assert core.latest["a"].is_ended


def test_retry_after_lengthens_a_wait_never_shortens_it() -> None:
    core = WaitCore.of(["a"], settings())
    assert core.observe({"a": status_error(RateLimitError, 429, 33.0)}, 1001.0).seconds == 33.0
    assert core.observe({"a": status_error(RateLimitError, 429, 1.0)}, 1002.0).seconds == 10.0


def test_the_interval_runs_from_when_the_poll_was_sent() -> None:
    core = WaitCore.of(["a"], settings(backoff_factor=1.0))
    # Answered 3 s after it was asked (a shared poller reading its pages): 7 s to the next.
    assert core.observe({"a": batch("a")}, 1003.0, asked_at=1000.0).seconds == 7.0
    assert core.observe({"a": batch("a")}, 1025.0, asked_at=1010.0).seconds == 0.0
    # A server's retry-after counts from its answer, in full.
    late = core.observe({"a": status_error(RateLimitError, 429, 33.0)}, 1033.0, asked_at=1030.0)
    assert late.seconds == 33.0
    soon = core.observe({"a": status_error(RateLimitError, 429, 1.0)}, 1034.0, asked_at=1033.0)
    assert soon.seconds == 9.0


def test_permanent_errors_fail_at_once_and_young_404s_wait() -> None:
    core = WaitCore.of(["a"], settings())
    step = core.observe({"a": status_error(BadRequestError, 400)}, 1001.0)
    assert step.action == "failed"
    assert "permanently" in step.message
    young = WaitCore.of(["a"], settings(not_found_grace_until=1100.0))
    assert young.observe({"a": status_error(NotFoundError, 404)}, 1050.0).action == "sleep"
    step = young.observe({"a": status_error(NotFoundError, 404)}, 1101.0)
    assert step.action == "failed"
    # The event says the failure is final (the task then fails without retry), and why.
    event = WaitEvent.model_validate(young.event(step, 1101.0).model_dump(mode="json"))
    assert (event.status, event.permanent, event.status_code) == ("error", True, 404)


def test_too_many_transient_errors_are_not_final() -> None:
    core = WaitCore.of(["a"], settings(max_transient_errors=0))
    step = core.observe({"a": status_error(OverloadedError, 529)}, 1001.0)
    event = core.event(step, 1001.0)
    assert (event.status, event.permanent, event.status_code) == ("error", False, None)


def test_the_deadline_times_out_and_shortens_the_last_sleep() -> None:
    core = WaitCore.of(["a"], settings(deadline=1015.0, cancel_on_timeout=True))
    assert core.observe({"a": batch("a")}, 1010.0).seconds == 5.0
    step = core.observe({"a": batch("a")}, 1015.0)
    assert step.action == "timeout"
    event = core.event(step, 1015.0, canceled=["a"])
    assert event.status == "timeout"
    assert event.message.endswith("; canceled a")


def test_progress_is_logged_on_change_or_every_few_minutes() -> None:
    core = WaitCore.of(["a", "b"], settings(progress_every=600.0))
    assert core.observe({"a": batch("a"), "b": batch("b")}, 1000.0).progress is not None
    assert core.observe({"a": batch("a"), "b": batch("b")}, 1100.0).progress is None
    assert core.observe({"a": batch("a"), "b": batch("b")}, 1700.0).progress is not None
    line = core.observe({"a": batch("a", "ended"), "b": batch("b")}, 1701.0).progress
    assert line is not None and line.startswith("1/2 batch(es) ended")


# --- both loops over the same answers give the same outcome -----------------------------------

SCRIPT: list[dict[str, Answer]] = [
    {"a": batch("a"), "b": APIConnectionError("cut")},
    {"a": status_error(RateLimitError, 429, 25.0), "b": batch("b")},
    {"a": batch("a", "ended"), "b": batch("b")},
    {"b": batch("b", "ended")},
]


class Scripted:
    """Answers one scripted round per poll; the clock moves only when the loop sleeps."""

    def __init__(self, rounds: list[dict[str, Answer]]) -> None:
        self.rounds = list(rounds)
        self.now = 1000.0
        self.slept: list[float] = []
        self.asked: list[list[str]] = []

    def poll(self, ids: Sequence[str]) -> dict[str, Answer]:
        self.asked.append(list(ids))
        answers = self.rounds.pop(0)
        return {i: answers[i] for i in ids if i in answers}

    async def apoll(self, ids: Sequence[str]) -> dict[str, Answer]:
        return self.poll(ids)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


@pytest.mark.parametrize(
    ("script", "deadline", "status"),
    [(SCRIPT, None, "ended"), (SCRIPT[:3] + [{"b": batch("b")}] * 9, 1100.0, "timeout")],
)
def test_worker_and_triggerer_loops_agree(
    script: list[dict[str, Answer]], deadline: float | None, status: str
) -> None:
    def fresh() -> WaitCore:
        return WaitCore.of(["a", "b"], settings(deadline=deadline, max_transient_errors=3))

    sync = Scripted(script)
    worker = wait_in_worker(
        None,  # type: ignore[arg-type]  # never used: every poll is scripted
        fresh(),
        log=LOG,
        clock=lambda: sync.now,
        sleep=sync.sleep,
        poll=sync.poll,
    )
    async_ = Scripted(script)
    triggerer = asyncio.run(
        wait_in_triggerer(
            None,  # type: ignore[arg-type]
            fresh(),
            log=LOG,
            poll=async_.apoll,
            clock=lambda: async_.now,
            sleep=async_.asleep,
        )
    )
    assert worker.status == triggerer.status == status
    assert worker.model_dump() == triggerer.model_dump()
    assert sync.slept == async_.slept
    assert sync.asked == async_.asked
    assert sync.slept[:2] == [10.0, 25.0]  # the interval, then the server's retry-after
    assert sync.asked[2:4] == [["a", "b"], ["b"]]  # an ended batch is not polled again
