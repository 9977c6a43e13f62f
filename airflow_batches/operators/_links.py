"""Operator extra links: the evaluation's report, and the job's batches where a person can
look at them (the Console for the real API, the emulator's admin view for the emulator).

Airflow 3 calls ``get_link`` in the worker once the task has run and keeps the answer in XCom
(``xcom_key``) for the UI, so the links read what the task set on the operator instance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_batches._compat import BaseOperatorLink
from airflow_batches.api._settings import DEFAULT_BASE_URL

if TYPE_CHECKING:
    from airflow_batches._compat import BaseOperator

CONSOLE_BATCH_URL = "https://console.anthropic.com/workspaces/{workspace}/batches/{batch_id}"
"""Where the Console shows one batch; ``[airflow_batches] console_batch_url`` overrides it.
``{workspace}`` is the connection's ``workspace_id`` or ``default``."""


def batch_url(
    base_url: str, batch_id: str, *, workspace_id: str | None = None, template: str | None = None
) -> str:
    """A page about one batch: the Console's for the real API, else the emulator's admin
    view of it (``/_emulator/batches/{id}``)."""
    if base_url.rstrip("/") != DEFAULT_BASE_URL and template is None:
        return f"{base_url.rstrip('/')}/_emulator/batches/{batch_id}"
    return (template or CONSOLE_BATCH_URL).format(
        workspace=workspace_id or "default", batch_id=batch_id
    )


class EvalReportLink(BaseOperatorLink):
    """The evaluation's ``report.html``."""

    name = "Eval report"

    def get_link(self, operator: BaseOperator, *, ti_key: Any) -> str:
        return str(getattr(operator, "report_url", "") or "")


class BatchesLink(BaseOperatorLink):
    """The job's first batch (the report links every one of them)."""

    name = "Batches"

    def get_link(self, operator: BaseOperator, *, ti_key: Any) -> str:
        urls = getattr(operator, "batch_urls", None) or []
        return str(urls[0]) if urls else ""
