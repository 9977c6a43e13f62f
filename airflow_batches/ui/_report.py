"""An evaluation's ``report.html``, streamed from the storage it was written to.

The report of a task instance is the one its evaluation recorded (the files XCom it leaves
whatever the gate decides; else its return value, for a night evaluated before that XCom
existed), read through ``ObjectStoragePath`` with the storage connection the evaluation wrote
with: a local file, S3, GCS, anything Airflow's object storage reads. Only a file named
``report.html`` is served, with a policy that lets no script run, so an XCom pointing
elsewhere cannot turn the api-server into a reader of other files or pages.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from airflow_batches.operators._common import storage_path
from airflow_batches.ui._records import EVAL_FILES_KEY, RETURN_VALUE, TaskRecord

__all__ = [
    "CHUNK_BYTES",
    "REPORT_HEADERS",
    "REPORT_NAME",
    "ReportMissing",
    "report_location",
    "stream",
]

REPORT_NAME = "report.html"
CHUNK_BYTES = 64 * 1024
REPORT_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox allow-popups "
        "allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "private, no-store",
}


class ReportMissing(LookupError):
    """No report to serve for that task instance; the message says why."""


def report_location(record: TaskRecord) -> tuple[str, str | None]:
    """The report's URI and its storage connection, as the evaluation recorded them."""
    written = record.values.get(EVAL_FILES_KEY)
    files: Any = None
    conn_id = None
    if isinstance(written, Mapping):
        files, conn_id = written.get("files"), written.get("conn_id")
    if not isinstance(files, Mapping):
        summary = record.values.get(RETURN_VALUE)
        files = summary.get("files") if isinstance(summary, Mapping) else None
    uri = files.get("report") if isinstance(files, Mapping) else None
    if not isinstance(uri, str) or not uri:
        raise ReportMissing(
            f"{record.dag_id} / {record.run_id} / {record.task_id} wrote no report "
            f"(the task ended {record.state or 'without a state'})"
        )
    if uri.rstrip("/").rsplit("/", 1)[-1] != REPORT_NAME:
        raise ReportMissing(f"the recorded report is not a {REPORT_NAME}")
    return uri, conn_id if isinstance(conn_id, str) else None


def stream(uri: str, conn_id: str | None) -> Iterator[bytes]:
    """The file's bytes, ``CHUNK_BYTES`` at a time (opened before the first is yielded, so a
    missing file fails before the response starts)."""
    path = storage_path(uri, conn_id)
    assert path is not None
    handle = path.open("rb")  # type: ignore[no-untyped-call]

    def chunks() -> Iterator[bytes]:
        with handle:
            while chunk := handle.read(CHUNK_BYTES):
                yield chunk

    return chunks()
