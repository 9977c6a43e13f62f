"""Waiting for batches to end in a worker (the triggerer has its own async loop)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_batches.api import (
    APIConnectionError,
    APIStatusError,
    BatchesError,
    Client,
    MessageBatch,
    NotFoundError,
)
from airflow_batches.api._retry import RETRYABLE_STATUSES
from airflow_batches.jobs._progress import JobProgress

NOT_FOUND_GRACE = 300.0
"""Seconds after submission during which a 404 is taken for the API's read-after-create lag."""
DEFER_TIMEOUT_MARGIN = 600.0
"""Added to a deferred wait's own deadline for Airflow's defer timeout, a backstop only."""


def is_transient(exc: Exception, *, now: float, not_found_grace_until: float | None) -> bool:
    """Whether a failed poll is worth another try (as opposed to failing the wait now).

    A 404 shortly after creation is transient: the API has been seen to answer 404 for a
    batch a second after creating it.
    """
    if isinstance(exc, APIConnectionError):
        return True
    if isinstance(exc, NotFoundError):
        return not_found_grace_until is not None and now < not_found_grace_until
    return isinstance(exc, APIStatusError) and exc.status_code in RETRYABLE_STATUSES


class WaitTimeout(BatchesError):
    """The deadline passed before every batch ended."""


class PollingFailed(BatchesError):
    """Polling failed permanently, or too many times in a row."""


@dataclass
class Poller:
    """Poll batches from a worker until they have all ended.

    The interval starts at ``poke_interval`` and grows by ``backoff_factor`` up to
    ``max_poke_interval``; a server's ``retry-after`` lengthens a wait, never shortens it.
    """

    client: Client
    log: Any
    poke_interval: float = 60.0
    max_poke_interval: float = 600.0
    backoff_factor: float = 1.5
    max_transient_errors: int = 10
    not_found_grace_until: float | None = None
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep

    def poll_once(
        self, ids: Sequence[str], errors: int
    ) -> tuple[list[MessageBatch] | None, int, float]:
        """One round: (batches, or None after a transient failure; error count; asked wait)."""
        try:
            return [self.client.retrieve(i) for i in ids], 0, 0.0
        except (APIStatusError, APIConnectionError) as exc:
            transient = is_transient(
                exc, now=self.clock(), not_found_grace_until=self.not_found_grace_until
            )
            if not transient:
                raise PollingFailed(f"polling failed permanently: {exc}") from exc
            errors += 1
            if errors > self.max_transient_errors:
                raise PollingFailed(f"{errors} consecutive polls failed; last: {exc}") from exc
            self.log.warning(
                "Poll failed (%s); attempt %d of %d", exc, errors, self.max_transient_errors
            )
            return None, errors, float(getattr(exc, "retry_after", None) or 0.0)

    def wait(
        self, ids: Sequence[str], *, started: float, deadline: float | None
    ) -> list[MessageBatch]:
        interval = self.poke_interval
        errors = 0
        while True:
            batches, errors, asked = self.poll_once(ids, errors)
            if batches is not None:
                progress = JobProgress.of(batches)
                self.log.info("%s", progress.line(self.clock() - started))
                if progress.all_ended:
                    return batches
            wait = max(interval, asked)
            if deadline is not None:
                remaining = deadline - self.clock()
                if remaining <= 0:
                    raise WaitTimeout("the wait timed out before every batch ended")
                wait = min(wait, remaining)
            self.sleep(wait)
            if batches is not None:
                interval = min(interval * self.backoff_factor, self.max_poke_interval)
