"""What a ``FetchResultsOperator`` returned, read back: its manifest, its files, its rows.

:func:`read_results` is the public way to turn a fetch's output into rows in a task of one's
own (docs/operators.md, "Reading the results back"); ``EvaluateResultsOperator`` reads its
input through the same :func:`fetch_output`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_batches._compat import ObjectStoragePath
from airflow_batches.jobs import child, fresh
from airflow_batches.jobs.results import MANIFEST_FILE, ResultRow, rows_from_files, rows_from_lines
from airflow_batches.operators._common import parse_text, storage_path

__all__ = ["FetchOutput", "fetch_output", "read_results"]


@dataclass(frozen=True)
class FetchOutput:
    manifest: dict[str, Any]
    files: list[Any]
    """The published results files (``ObjectStoragePath``), in the manifest's order."""
    inline: list[Any] | None
    """The results themselves, when the fetch returned them in XCom (no destination)."""


def fetch_output(value: Any, conn_id: str | None = None) -> FetchOutput:
    """A fetch's output from what a task holds of it.

    ``value`` is what ``FetchResultsOperator`` returned (its manifest, or
    ``{"manifest", "results"}`` without a destination; as a dict or as the JSON text a
    template renders), or the URI (or ``ObjectStoragePath``) of its results folder or of its
    ``manifest.json``. ``conn_id`` is the storage connection of the files (the fetch's
    ``destination_conn_id``). ``ValueError`` for anything else, or a folder with no manifest.
    """
    if isinstance(value, str) and value.lstrip().startswith("{"):
        value = parse_text(value)
    elif isinstance(value, str | ObjectStoragePath):
        path = storage_path(value, conn_id)
        assert path is not None
        target = path if path.name.endswith(".json") else child(path, MANIFEST_FILE)
        if not fresh(target).exists():
            raise ValueError(f"no manifest at {target}: is it a fetch's destination?")
        with target.open("rb") as stream:  # type: ignore[no-untyped-call]
            value = parse_text(stream.read().decode())
    if isinstance(value, Mapping) and "manifest" in value and "results" in value:
        return FetchOutput(dict(value["manifest"]), [], list(value["results"]))
    if isinstance(value, Mapping) and isinstance(value.get("files"), Mapping):
        paths = [storage_path(p, conn_id) for p in value["files"].values()]
        return FetchOutput(dict(value), [p for p in paths if p is not None], None)
    raise ValueError(
        "expected the output of FetchResultsOperator (its manifest, or its results in XCom), "
        f"or the URI of a results folder; got {type(value).__name__}"
    )


def read_results(output: Any, *, conn_id: str | None = None) -> Iterator[ResultRow]:
    """Every result of a fetch as a :class:`~airflow_batches.jobs.results._rows.ResultRow`.

    ``output`` is what ``FetchResultsOperator`` returned (``fetch.output`` handed to a task,
    or the dict itself), or its results folder / ``manifest.json`` URI; ``conn_id`` is the
    storage connection of that folder. The files are read one line at a time (memory does
    not grow with the job); a job split by type or by model yields every file in turn.

    >>> for row in read_results(manifest, conn_id="aws_default"):  # doctest: +SKIP
    ...     print(row.custom_id, row.text if row.ok else row.error, row.metadata)
    """
    found = fetch_output(output, conn_id)
    if found.inline is not None:
        return rows_from_lines(found.inline)
    return rows_from_files(found.files)
