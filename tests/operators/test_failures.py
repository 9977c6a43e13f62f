"""What a task retry cannot fix fails at once; the rest is retried (``operators/_failures``)."""

from __future__ import annotations

import pytest

from airflow_batches._compat import AirflowException, AirflowFailException
from airflow_batches.api import APIConnectionError, status_error_class
from airflow_batches.jobs.wait import WaitEvent
from airflow_batches.operators._failures import task_error, wait_error


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_answers_a_retry_gets_again_fail_without_retry(status: int) -> None:
    exc = status_error_class(status)("no", status_code=status)
    assert isinstance(task_error(exc, "c"), AirflowFailException)


@pytest.mark.parametrize("status", [408, 409, 429, 500, 503, 529])
def test_passing_answers_are_retried(status: int) -> None:
    exc = status_error_class(status)("busy", status_code=status)
    error = task_error(exc, "c")
    assert isinstance(error, AirflowException) and not isinstance(error, AirflowFailException)


def test_a_young_batchs_404_and_a_lost_connection_are_retried() -> None:
    not_found = status_error_class(404)("no such batch", status_code=404)
    assert not isinstance(task_error(not_found, "c", not_found=False), AirflowFailException)
    lost = APIConnectionError("reset", method="GET", url="http://127.0.0.1:1/v1")
    assert not isinstance(task_error(lost, "c"), AirflowFailException)


def test_errors_name_the_connection() -> None:
    refused = status_error_class(401)("invalid x-api-key", status_code=401)
    text = str(task_error(refused, "mb_prod"))
    assert "401" in text and "connection 'mb_prod'" in text and "AIRFLOW_CONN_MB_PROD" in text
    event = WaitEvent(status="error", message="polling failed", permanent=True, status_code=403)
    error = wait_error(event, "mb_prod")
    assert isinstance(error, AirflowFailException)
    assert "The key of connection 'mb_prod' may not do this" in str(error)
    transient = WaitEvent(status="error", message="11 consecutive polls failed")
    assert not isinstance(wait_error(transient, "mb_prod"), AirflowFailException)
