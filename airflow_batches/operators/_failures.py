"""Which failures a task retry can fix, and errors that say what to change.

A task's ``retries`` are for what passes: a connection reset, a 5xx, a 529, a 429, a worker
lost. What fails the same way every time (invalid requests, a refused key, a batch that does
not exist, a destination that is another run's, a job over its spend limit) fails the task at
once with ``AirflowFailException``, which Airflow 3.1, 3.2 and 3.3 never retry: a retry would
only repeat the failure after ``retry_delay``. Each of those errors names the thing to change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from airflow_batches._compat import AirflowException, AirflowFailException
from airflow_batches.api import (
    APIStatusError,
    BatchesError,
    NotFoundError,
    ResultsExpiredError,
)
from airflow_batches.hooks.batches import ConnectionConfigError
from airflow_batches.jobs.cost import CostLimitExceededError
from airflow_batches.jobs.prepare import RequestValidationError
from airflow_batches.jobs.results import DestinationHeldError, XComTooLargeError
from airflow_batches.jobs.wait import WaitEvent

PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 413, 422})
"""API answers that the same call gets again: bad request, bad key, forbidden, no such
batch (past the read-after-create grace), too large, unprocessable."""

NOT_RETRIED = "Not retried: the same input fails the same way."

_DETERMINISTIC = (
    RequestValidationError,
    CostLimitExceededError,
    DestinationHeldError,
    XComTooLargeError,
    ResultsExpiredError,
    ConnectionConfigError,
)


def advice(status_code: int | None, conn_id: str) -> str:
    """What to change after the API refused a call of connection ``conn_id``."""
    if status_code == 401:
        return (
            f"The API refused the key of connection {conn_id!r}: put a valid API key in its "
            f"password field (airflow connections delete {conn_id}, then add it again with "
            f"--conn-password; or AIRFLOW_CONN_{conn_id.upper()})."
        )
    if status_code == 403:
        return (
            f"The key of connection {conn_id!r} may not do this: check that the key belongs to "
            "the workspace (extra workspace_id) and may use the Message Batches API."
        )
    if status_code == 404:
        return (
            f"No such batch for the key of connection {conn_id!r}: was the job submitted "
            "with another connection or workspace, or deleted?"
        )
    if status_code in (400, 413, 422):
        return "The API refused the call as sent: change what the message names."
    return ""


def is_permanent(exc: BaseException, *, not_found: bool = True) -> bool:
    """Whether no retry of the task can change ``exc``.

    :param not_found: whether a 404 is final (a batch created minutes ago may still answer
        404 for a while: the caller knows how old its batches are).
    """
    if isinstance(exc, _DETERMINISTIC):
        return True
    if isinstance(exc, NotFoundError):
        return not_found
    return isinstance(exc, APIStatusError) and exc.status_code in PERMANENT_STATUSES


def task_error(exc: BatchesError, conn_id: str, *, not_found: bool = True) -> AirflowException:
    """The Airflow exception for ``exc``: failing without retry when no retry can help."""
    status = exc.status_code if isinstance(exc, APIStatusError) else None
    hint = advice(status, conn_id)
    text = f"{exc}\n{hint}" if hint else str(exc)
    if is_permanent(exc, not_found=not_found):
        return AirflowFailException(f"{text}\n{NOT_RETRIED}")
    return AirflowException(text)


@contextmanager
def task_errors(conn_id: str, *, not_found: Callable[[], bool] = lambda: True) -> Iterator[None]:
    """Turn the package's errors into Airflow's: final ones fail without retry."""
    try:
        yield
    except BatchesError as exc:
        raise task_error(exc, conn_id, not_found=not_found()) from exc


def wait_error(event: WaitEvent, conn_id: str, what: str = "") -> AirflowException:
    """The Airflow exception for a wait that ended in error (``event.status == "error"``)."""
    hint = advice(event.status_code, conn_id) if event.permanent else ""
    text = f"{what}{event.message}" + (f"\n{hint}" if hint else "")
    if event.permanent:
        return AirflowFailException(f"{text}\n{NOT_RETRIED}")
    return AirflowException(text)
