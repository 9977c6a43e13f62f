"""The addresses of the Message Batches page, one place for the plugin's routes and the
operators' extra links (no Airflow import: a worker builds links with it).

Every address is root-relative (``/message-batches/...``, under ``[api] base_url``'s path when
Airflow is served below a prefix): the UI opens an extra link only when it is same-origin (or
``http:``, ``https:``, ``mailto:``), and a root-relative address is same-origin wherever the
browser reached the api-server from, behind a proxy included.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode, urlsplit

__all__ = [
    "MOUNT",
    "NAV_ROUTE",
    "airflow_dag_url",
    "airflow_task_url",
    "page_url",
    "report_url",
    "root_path",
    "run_url",
]

MOUNT = "/message-batches"
"""Where the api-server mounts the plugin's app (the plugin's ``url_prefix``)."""
NAV_ROUTE = "message-batches"
"""The page's route in the UI (``/plugin/message-batches``: the page in a frame)."""


def root_path(base_url: str | None) -> str:
    """The path Airflow is served under, from ``[api] base_url``: ``/`` or ``/prefix/``."""
    path = urlsplit(base_url or "").path or "/"
    return path if path.endswith("/") else path + "/"


def _query(**params: object) -> str:
    kept = {k: str(v) for k, v in params.items() if v is not None and v != ""}
    return "?" + urlencode(kept) if kept else ""


def page_url(root: str, **filters: object) -> str:
    """The page (in flight and evaluations), narrowed by ``dag_id`` and the like."""
    return f"{root}{MOUNT.lstrip('/')}/{_query(**filters)}"


def run_url(root: str, dag_id: str, run_id: str, job: str | None = None) -> str:
    """Every job of one DAG run, fetched or not; ``job`` marks one of them."""
    return f"{root}{MOUNT.lstrip('/')}/run{_query(dag_id=dag_id, run_id=run_id, job=job)}"


def report_url(root: str, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """An evaluation's ``report.html``, served from wherever the evaluation wrote it."""
    index = map_index if map_index >= 0 else None
    query = _query(dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=index)
    return f"{root}{MOUNT.lstrip('/')}/report{query}"


def airflow_dag_url(root: str, dag_id: str) -> str:
    """The DAG's page in the Airflow UI."""
    return f"{root}dags/{quote(dag_id, safe='')}"


def airflow_task_url(root: str, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
    """The task instance's page in the Airflow UI."""
    path = f"{root}dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}/tasks/"
    path += quote(task_id, safe="")
    return path + (f"/mapped/{map_index}" if map_index >= 0 else "")
