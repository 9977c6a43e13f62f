"""Airflow glue shared by the operators and the sensor: config, storage, state, XCom shapes."""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from airflow_batches._compat import (
    AIRFLOW_VERSION,
    AirflowFailException,
    Asset,
    BaseOperator,
    ObjectStoragePath,
    conf,
)
from airflow_batches.api._pricing import PriceTable, load_price_table
from airflow_batches.jobs import JobDescriptor, JobStore, StoragePath, path_part
from airflow_batches.jobs.submit import Ledger, LedgerBackend, MemoryLedger

if TYPE_CHECKING:
    from airflow_batches._compat import Context

CONF_SECTION = "airflow_batches"
STATE_DIR = "state"


def conf_get(key: str) -> str | None:
    value = conf.get(CONF_SECTION, key, fallback=None)
    return value or None


def price_table(prices: Mapping[str, Mapping[str, Any]] | str | None) -> PriceTable:
    """The price table: the packaged one, extended by ``prices`` (overrides or a file), else
    by ``[airflow_batches] prices_path``."""
    return load_price_table(prices if prices is not None else conf_get("prices_path"))


def storage_path(
    path: str | ObjectStoragePath | None, conn_id: str | None
) -> ObjectStoragePath | None:
    """An ``ObjectStoragePath`` from a URI or a path object, honouring its connection."""
    if path is None or path == "":
        return None
    if isinstance(path, ObjectStoragePath):
        return path
    text = str(path)
    if "://" not in text:
        text = "file://" + text
    # Given conn_id=None, Airflow 3.1 ignores a connection named in the URI (s3://conn@...).
    return ObjectStoragePath(text, conn_id=conn_id) if conn_id else ObjectStoragePath(text)


def storage_conn_id(path: Any) -> str | None:
    """The connection of an ``ObjectStoragePath`` (Airflow 3.1 keeps it in storage_options)."""
    conn_id: str | None = getattr(path, "conn_id", None)
    if conn_id is None:
        conn_id = getattr(path, "storage_options", {}).get("conn_id")
    return conn_id


def default_asset(destination: Any, asset: Asset | bool | None) -> Asset | None:
    """The Asset a fetch emits: the one given, else one for a destination known at parse time
    (a templated URI is known only at run time: pass ``asset=`` explicitly), else none."""
    if isinstance(asset, Asset):
        return asset
    if asset is False or destination is None:
        return None
    text = str(destination)
    if "{{" in text or "{%" in text:
        return None
    if "://" not in text:
        text = "file://" + text
    return Asset(uri=text)


def staging_root(
    path: str | ObjectStoragePath | None, conn_id: str | None
) -> ObjectStoragePath | None:
    """The shared folder for staged requests: the operator's, else ``[airflow_batches]``."""
    if path:
        return storage_path(path, conn_id)
    configured = conf_get("staging_path")
    if configured:
        return storage_path(configured, conn_id or conf_get("staging_conn_id"))
    return None


def task_folder(context: Context) -> str:
    """A storage-safe folder name unique to the task instance (dag, run, task, map index)."""
    ti = context["ti"]
    parts = [ti.dag_id, ti.run_id, ti.task_id]
    map_index = getattr(ti, "map_index", -1)
    if map_index is not None and map_index >= 0:
        parts.append(f"map-{map_index}")
    return "/".join(path_part(p) for p in parts)


class TaskStateStore(Protocol):
    """The part of Airflow's task state store the operators use: JSON values by key."""

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...


class FileStateStore:
    """The task state store's ``get`` / ``set`` as one ``<key>.json`` each in a shared folder.

    Stands in for the task state store on Airflow < 3.3, which has none: kept on the staging
    storage, it is seen by every worker and by every try of the task.
    """

    def __init__(self, folder: StoragePath) -> None:
        self.store = JobStore(folder)

    def __repr__(self) -> str:
        return f"FileStateStore({str(self.store.root)!r})"

    def get(self, key: str) -> Any:
        return self.store.read_json(f"{path_part(key)}.json")

    def set(self, key: str, value: Any) -> None:
        self.store.write_json(value, f"{path_part(key)}.json")


def state_store(context: Context, base: StoragePath | None) -> TaskStateStore | None:
    """Where the task keeps what must outlive a try: Airflow's task state store (>= 3.3),
    else a :class:`FileStateStore` in ``<base>/<dag>/<run>/<task>/state/`` on shared
    storage, else (no ``base``) nowhere."""
    accessor: TaskStateStore | None = context.get("task_state_store")
    if accessor is not None:
        return accessor
    return None if base is None else FileStateStore(base / task_folder(context) / STATE_DIR)


def job_folder(job: JobDescriptor) -> ObjectStoragePath | None:
    """The job's folder on shared storage, if its requests were staged there."""
    return storage_path(job.job_dir, job.job_dir_conn_id)


class StateStoreLedger:
    """A job ledger kept in the task's state store (see :func:`state_store`)."""

    def __init__(self, accessor: TaskStateStore, key: str) -> None:
        self.accessor = accessor
        self.key = key

    def __repr__(self) -> str:
        return f"StateStoreLedger(key={self.key!r})"

    def load(self) -> Ledger | None:
        data = self.accessor.get(self.key)
        return None if not data else Ledger.model_validate(data)

    def save(self, ledger: Ledger) -> None:
        self.accessor.set(self.key, ledger.model_dump(mode="json"))


def ledger_backend(
    context: Context, key: str, base: StoragePath | None, *, task: BaseOperator
) -> LedgerBackend:
    """The ledger of a submission: in the task's state store, or refused, or in memory.

    With neither a task state store (Airflow < 3.3) nor shared storage, a retry could not
    find the batches this try creates and would pay for them again: a task that has retries
    is failed before anything is sent; one without gets a memory ledger and a warning.
    """
    store = state_store(context, base)
    if store is not None:
        return StateStoreLedger(store, key)
    if task.retries:
        raise AirflowFailException(
            f"Task {task.task_id!r} has retries={task.retries}, but Airflow {AIRFLOW_VERSION} "
            "has no task state store and no staging_path is set, so a retry could not find "
            "the batches this try creates and would pay for them again. Set staging_path= "
            "(or [airflow_batches] staging_path) to storage every worker shares, or set "
            "retries=0. Nothing was sent."
        )
    task.log.warning(
        "No task state store (Airflow %s) and no staging_path: a retry or a clear of this "
        "task cannot re-attach to the batches this try creates. Set [airflow_batches] "
        "staging_path to storage every worker shares.",
        AIRFLOW_VERSION,
    )
    return MemoryLedger()


def parse_text(text: str) -> Any:
    """A value rendered to text by a template: JSON, or the Python repr Jinja gives a dict."""
    try:
        return json.loads(text)
    except ValueError:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise ValueError(f"not JSON nor a Python literal: {text[:80]!r}") from None


def coerce_job(value: Any) -> JobDescriptor | None:
    """A job descriptor from what XCom gives back (dict, JSON text), or None if not one."""
    if isinstance(value, JobDescriptor):
        return value
    if isinstance(value, str) and value.lstrip().startswith("{"):
        value = parse_text(value)
    if isinstance(value, Mapping) and "batches" in value and "fingerprint" in value:
        return JobDescriptor.model_validate(value)
    return None


def coerce_batch_ids(value: Any) -> list[str]:
    """Batch ids from a job descriptor, a list of ids, or one id."""
    return list(dict.fromkeys(_batch_ids(value)))


def _batch_ids(value: Any) -> list[str]:
    job = coerce_job(value)
    if job is not None:
        return job.batch_ids
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            value = parse_text(text)
        else:
            return [part.strip() for part in text.split(",") if part.strip()]
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        ids = [str(v).strip() for v in value if str(v).strip()]
        if ids:
            return ids
    raise ValueError(
        f"expected a job descriptor (the output of SubmitBatchOperator), a batch id or a list "
        f"of batch ids; got {type(value).__name__}"
    )
