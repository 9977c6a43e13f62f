"""Waiting for batches to end: one I/O-free core, two thin loops over it.

:class:`WaitCore` is a state machine. It is fed the answers (batches or errors) of one round of
polls and the time, and says what comes next: sleep N seconds, or stop because every batch
ended, the wait failed, or the deadline passed. It holds everything a wait knows: the latest
state of every batch, the interval and its backoff, the count of consecutive transient
errors, the young-batch 404 grace and the deadline. It never sleeps, reads a clock or sends a
request, so every path through it is a plain unit test.

:func:`wait_in_worker` (sync, a task's own process) and :func:`wait_in_triggerer` (async, the
triggerer's event loop) are the two loops over it. They differ only in how they poll, sleep and
cancel; both take the clock and the sleep as arguments. Whatever runs the wait, the outcome is
the same :class:`~airflow_batches.jobs.wait._progress.WaitEvent`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_batches.api import (
    AsyncClient,
    BatchesError,
    Client,
    MessageBatch,
)
from airflow_batches.api._retry import is_transient
from airflow_batches.jobs.wait._progress import JobProgress, WaitEvent

DEFER_TIMEOUT_MARGIN = 600.0
"""Added to a deferred wait's own deadline for Airflow's defer timeout, a backstop only."""
PROGRESS_EVERY = 600.0
"""Seconds between two progress lines when nothing has changed (a change is logged at once)."""
POLL_CONCURRENCY = 4
"""Retrieve calls in flight at once for one wait: a job of many batches must not burst."""
CANCEL_TIMEOUT = 30.0

Answer = MessageBatch | BatchesError
Answers = Mapping[str, Answer]


@dataclass(frozen=True)
class WaitSettings:
    """How a wait polls and when it gives up. Times are epoch seconds."""

    poke_interval: float = 60.0
    max_poke_interval: float = 600.0
    backoff_factor: float = 1.5
    max_transient_errors: int = 10
    deadline: float | None = None
    not_found_grace_until: float | None = None
    started_at: float = 0.0
    cancel_on_timeout: bool = False
    progress_every: float = PROGRESS_EVERY

    def __post_init__(self) -> None:
        if self.poke_interval < 0:
            raise ValueError("poke_interval must be >= 0")
        if self.max_transient_errors < 0:
            raise ValueError("max_transient_errors must be >= 0")


Action = Literal["sleep", "ended", "failed", "timeout"]


@dataclass(frozen=True)
class Step:
    """What the core decided after one round."""

    action: Action
    seconds: float = 0.0
    """How long to sleep (``action == "sleep"``)."""
    message: str = ""
    """Why the wait failed or timed out."""
    progress: str | None = None
    """A progress line to log (None: nothing new to say)."""
    warning: str | None = None
    """A failed poll to log."""
    permanent: bool = False
    """The wait failed on an answer no retry changes (401, 403, a 404 past the grace, ...)."""
    status_code: int | None = None
    """The HTTP status of that answer, when it was one."""


@dataclass
class WaitCore:
    """The state of one wait; see the module docstring."""

    batch_ids: list[str]
    settings: WaitSettings
    latest: dict[str, MessageBatch] = field(default_factory=dict)
    interval: float = 0.0
    errors: int = 0
    _shown: JobProgress | None = None
    _shown_at: float = float("-inf")

    def __post_init__(self) -> None:
        self.batch_ids = list(dict.fromkeys(self.batch_ids))
        self.interval = self.settings.poke_interval

    @classmethod
    def of(cls, batch_ids: Sequence[str], settings: WaitSettings) -> WaitCore:
        return cls(list(batch_ids), settings)

    def pending(self) -> list[str]:
        """The batches not known to have ended, in the order given."""
        return [i for i in self.batch_ids if not (i in self.latest and self.latest[i].is_ended)]

    def observe(self, answers: Answers, now: float, asked_at: float | None = None) -> Step:
        """Take one round of answers (by batch id) and decide what comes next.

        ``asked_at``: when that round of polls was sent. The next is due an interval after
        it, not after the answers came: a slow answer (a shared poller waiting for its list
        pages) does not stretch the interval. A server's ``retry-after`` still counts in full.
        """
        spent = 0.0 if asked_at is None else max(0.0, now - asked_at)
        failures: list[BatchesError] = []
        for answer in answers.values():
            if isinstance(answer, MessageBatch):
                self.latest[answer.id] = answer
            else:
                failures.append(answer)
        s = self.settings
        warning = None
        if failures:
            grace = s.not_found_grace_until
            permanent = [
                e for e in failures if not is_transient(e, now=now, not_found_grace_until=grace)
            ]
            if permanent:
                return Step(
                    "failed",
                    message=f"polling failed permanently: {permanent[0]}",
                    permanent=True,
                    status_code=getattr(permanent[0], "status_code", None),
                )
            self.errors += 1
            last = failures[-1]
            if self.errors > s.max_transient_errors:
                return Step(
                    "failed", message=f"{self.errors} consecutive polls failed; last: {last}"
                )
            wait = max(self.interval - spent, float(getattr(last, "retry_after", None) or 0.0))
            warning = (
                f"Poll failed ({last}); attempt {self.errors} of {s.max_transient_errors}, "
                f"next in {wait:.1f}s"
            )
        else:
            self.errors = 0
            wait = self.interval - spent
        progress = self._progress_line(now)
        if not failures:
            if not self.pending():
                return Step("ended", progress=progress)
            self.interval = min(self.interval * max(s.backoff_factor, 1.0), s.max_poke_interval)
        if s.deadline is not None:
            remaining = s.deadline - now
            if remaining <= 0:
                return Step(
                    "timeout",
                    message="the wait timed out before every batch ended",
                    progress=progress,
                    warning=warning,
                )
            wait = min(wait, remaining)
        return Step("sleep", seconds=max(wait, 0.0), progress=progress, warning=warning)

    def _progress_line(self, now: float) -> str | None:
        if not self.latest:
            return None
        progress = JobProgress.of(self.latest[i] for i in self.batch_ids if i in self.latest)
        if progress == self._shown and now - self._shown_at < self.settings.progress_every:
            return None
        self._shown, self._shown_at = progress, now
        return progress.line(now - self.settings.started_at)

    def event(self, step: Step, now: float, canceled: Sequence[str] = ()) -> WaitEvent:
        """The outcome of a wait that stopped at ``step``."""
        status: Literal["ended", "timeout", "error"] = (
            "ended"
            if step.action == "ended"
            else "timeout"
            if step.action == "timeout"
            else "error"
        )
        message = step.message
        if step.action == "timeout" and self.settings.cancel_on_timeout:
            message += f"; canceled {', '.join(canceled) or 'none'}"
        return WaitEvent(
            status=status,
            message=message,
            batches=[self.latest[i] for i in self.batch_ids if i in self.latest],
            elapsed=now - self.settings.started_at,
            permanent=step.permanent,
            status_code=step.status_code,
        )


def _log_step(log: Any, step: Step) -> None:
    if step.warning:
        log.warning("%s", step.warning)
    if step.progress:
        log.info("%s", step.progress)


# --- the worker's loop (sync) -----------------------------------------------------------------


def poll_in_worker(client: Client, ids: Sequence[str]) -> dict[str, Answer]:
    answers: dict[str, Answer] = {}
    for batch_id in ids:
        try:
            answers[batch_id] = client.retrieve(batch_id)
        except BatchesError as exc:
            answers[batch_id] = exc
    return answers


def cancel_in_worker(client: Client, core: WaitCore, log: Any) -> list[str]:
    """Cancel the batches of ``core`` still pending; returns those canceled."""
    canceled: list[str] = []
    for batch_id in core.pending():
        try:
            core.latest[batch_id] = client.cancel(batch_id)
        except BatchesError as exc:
            log.warning("Could not cancel batch %s: %s", batch_id, exc)
            continue
        canceled.append(batch_id)
    if canceled:
        log.warning("Canceled batch(es) %s", ", ".join(canceled))
    return canceled


SyncPoll = Callable[[Sequence[str]], dict[str, Answer]]


def step_in_worker(
    client: Client,
    core: WaitCore,
    *,
    log: Any,
    clock: Callable[[], float],
    poll: SyncPoll | None = None,
) -> Step:
    """One round of polls in the worker, logged."""
    asked_at = clock()
    answers = poll(core.pending()) if poll else poll_in_worker(client, core.pending())
    step = core.observe(answers, clock(), asked_at)
    _log_step(log, step)
    return step


def wait_in_worker(
    client: Client,
    core: WaitCore,
    *,
    log: Any,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    first: Step | None = None,
    poll: SyncPoll | None = None,
) -> WaitEvent:
    """Poll from a task's own process until the core stops; ``first`` is a round already made."""
    step = first or step_in_worker(client, core, log=log, clock=clock, poll=poll)
    while step.action == "sleep":
        sleep(step.seconds)
        step = step_in_worker(client, core, log=log, clock=clock, poll=poll)
    canceled: list[str] = []
    if step.action == "timeout" and core.settings.cancel_on_timeout:
        canceled = cancel_in_worker(client, core, log)
    return core.event(step, clock(), canceled)


# --- the triggerer's loop (async) -------------------------------------------------------------

AsyncPoll = Callable[[Sequence[str]], Awaitable[dict[str, Answer]]]


def async_poller(client: AsyncClient, concurrency: int = POLL_CONCURRENCY) -> AsyncPoll:
    """One retrieve per pending batch, a few at a time; every answer kept, none outlives it."""
    gate = asyncio.Semaphore(concurrency)

    async def one(batch_id: str) -> Answer:
        async with gate:
            try:
                return await client.retrieve(batch_id)
            except BatchesError as exc:
                return exc

    async def poll(ids: Sequence[str]) -> dict[str, Answer]:
        answers = await asyncio.gather(*(one(i) for i in ids))
        return dict(zip(ids, answers, strict=True))

    return poll


async def cancel_in_triggerer(client: AsyncClient, core: WaitCore, log: Any) -> list[str]:
    canceled: list[str] = []
    for batch_id in core.pending():
        try:
            core.latest[batch_id] = await asyncio.wait_for(client.cancel(batch_id), CANCEL_TIMEOUT)
        except (BatchesError, TimeoutError) as exc:
            log.warning("Could not cancel batch %s: %s", batch_id, exc)
            continue
        canceled.append(batch_id)
    if canceled:
        log.warning("Canceled batch(es) %s", ", ".join(canceled))
    return canceled


async def wait_in_triggerer(
    client: AsyncClient,
    core: WaitCore,
    *,
    log: Any,
    poll: AsyncPoll | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> WaitEvent:
    """Poll from the triggerer's event loop until the core stops; never blocks the loop."""
    poll = poll or async_poller(client)
    while True:
        asked_at = clock()
        step = core.observe(await poll(core.pending()), clock(), asked_at)
        _log_step(log, step)
        if step.action != "sleep":
            break
        await sleep(step.seconds)
    canceled: list[str] = []
    if step.action == "timeout" and core.settings.cancel_on_timeout:
        canceled = await cancel_in_triggerer(client, core, log)
    return core.event(step, clock(), canceled)
