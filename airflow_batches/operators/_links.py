"""Operator extra links: every task of a job opens the Message Batches page of its run, and
the evaluation opens its report, both served by the provider's plugin (``airflow_batches.ui``).

Airflow 3 calls ``get_link`` in the worker when the task ends (in any state) and keeps the
answer in XCom (``xcom_key``) for the UI. The UI opens a link only when it is same-origin or
``http(s):``/``mailto:``, so a report on ``file://`` or ``s3://`` is served by the api-server
(the plugin streams it from its storage, with Airflow's auth) instead of linked directly.

Each operator has a link class of its own, so the XCom key it leaves (``_link_<class>``, an
indexed column) tells the plugin which tasks submitted, waited for, fetched or evaluated a
job without reading any other XCom; the fetch's link names the job it fetched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_batches._compat import BaseOperatorLink, conf
from airflow_batches.api._settings import DEFAULT_BASE_URL
from airflow_batches.operators._common import coerce_job
from airflow_batches.ui._urls import report_url, root_path, run_url

if TYPE_CHECKING:
    from airflow_batches._compat import BaseOperator

EVAL_FILES_KEY = "airflow_batches_eval_files"
"""The XCom an evaluation leaves whatever its gate decides: its files' URIs (``summary``,
``report``, ...) and their storage connection, for the plugin to serve and read."""

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


def airflow_root() -> str:
    """The path the api-server is served under (``[api] base_url``), ``/`` by default."""
    return root_path(conf.get("api", "base_url", fallback=""))


def _job_id(operator: BaseOperator) -> str | None:
    """The id of the job the task was given (its rendered ``job``), when it is a descriptor."""
    try:
        job = coerce_job(getattr(operator, "job", None))
    except ValueError:
        return None
    return job.job_id if job is not None else None


class EvalReportLink(BaseOperatorLink):
    """The evaluation's ``report.html``, once the task has written one."""

    name = "Eval report"

    def get_link(self, operator: BaseOperator, *, ti_key: Any) -> str:
        if not getattr(operator, "report_url", ""):
            return ""
        return report_url(
            airflow_root(), ti_key.dag_id, ti_key.run_id, ti_key.task_id, ti_key.map_index
        )


class BatchesLink(BaseOperatorLink):
    """Every job of the task's run, with each batch's counts and a link to it (the Console,
    or the emulator's admin view); the evaluation's own link (its key is the plugin's mark of
    an evaluate task along with ``EvalReportLink``'s)."""

    name = "Batches"

    def get_link(self, operator: BaseOperator, *, ti_key: Any) -> str:
        return run_url(airflow_root(), ti_key.dag_id, ti_key.run_id, job=_job_id(operator))


class SubmitBatchesLink(BatchesLink):
    """``SubmitBatchOperator``'s: its key marks a task that submitted a job."""


class WaitBatchesLink(BatchesLink):
    """``BatchSensor``'s."""


class FetchBatchesLink(BatchesLink):
    """``FetchResultsOperator``'s: its key marks a fetch, its ``job=`` the job it fetched."""
