"""Where a submit's requests come from: a JSONL file on object storage, a list (inline or from
XCom), or a list a template rendered as text; each read as records for the validator."""

from __future__ import annotations

import ast
import gzip
from collections.abc import Iterator, Sequence
from typing import IO, Any

from airflow_batches._compat import ObjectStoragePath
from airflow_batches.jobs.prepare import records_from_items, records_from_jsonl, records_from_text
from airflow_batches.operators._common import storage_path


def request_records(
    requests: Any, requests_path: str | ObjectStoragePath | None, conn_id: str | None
) -> Iterator[tuple[str, Any]]:
    """The records of ``requests_path`` (read as a stream) if given, else of ``requests``."""
    if requests_path is not None:
        path = storage_path(requests_path, conn_id)
        assert path is not None
        with path.open("rb") as raw:  # type: ignore[no-untyped-call]
            stream: IO[bytes] = raw
            if path.name.endswith(".gz"):
                stream = gzip.GzipFile(fileobj=raw)  # type: ignore[assignment]
            yield from records_from_jsonl(stream)
        return
    items: Any = requests
    if isinstance(items, str) and items.lstrip().startswith("["):
        # A list a template rendered as text: JSON, read as strictly as a file; else the
        # Python repr Jinja gives a list of dicts.
        strict = list(records_from_text(items))
        if not (len(strict) == 1 and strict[0][0] == "requests"):
            yield from strict
            return
        try:
            items = ast.literal_eval(items)
        except (ValueError, SyntaxError, RecursionError, MemoryError):
            yield from strict
            return
    if isinstance(items, str | bytes) or not isinstance(items, Sequence):
        raise TypeError(
            f"requests must be a list of {{custom_id, params}} objects, got "
            f"{type(items).__name__}; for a file use requests_path="
        )
    yield from records_from_items(items)


def report_rejected(log: Any, count: int, shown: Sequence[Any], listed_at: Any) -> None:
    """The requests pre-flight skipped (``on_invalid='skip'``): the first ones, and where the
    rest are listed when the job is staged on shared storage."""
    first = f"the first {len(shown)} " if count > len(shown) else ""
    where = f"; {first}listed in {listed_at}" if listed_at is not None else ""
    log.warning(
        "Skipped %d invalid request(s) (on_invalid='skip')%s. First ones:\n  %s",
        count,
        where,
        "\n  ".join(str(p) for p in shown[:20]),
    )
