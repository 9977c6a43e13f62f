"""Where the final lines of a fetch go: files at the destination, or a list for XCom."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import IO, Any

from airflow_batches.api._format import shorten
from airflow_batches.jobs._store import open_to_read
from airflow_batches.jobs.prepare import MAX_NESTING, nests_deeper
from airflow_batches.jobs.results._checks import OTHER, ReadStats, XComTooLargeError, custom_id_of
from airflow_batches.jobs.results._scan import ResultRecord, scan_result_line

__all__ = ["FileSinks", "XComCollector", "read_cached_lines"]


class XComCollector:
    """Collects parsed result lines for XCom, within a byte budget."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.items: list[Any] = []

    def __call__(self, record: ResultRecord | None, line: bytes, model: str | None = None) -> None:
        self.size += len(line) + 1
        if self.size > self.max_bytes:
            raise XComTooLargeError(
                f"the results exceed the XCom limit of {self.max_bytes:,} bytes (max_xcom_bytes);"
                " give FetchResultsOperator a destination= to write them to object storage"
            )
        if nests_deeper(line, MAX_NESTING):
            # Built into objects, and serialised again by Airflow: both recurse.
            custom_id = record.custom_id if record is not None else custom_id_of(line)
            raise XComTooLargeError(
                f"the result of custom_id {shorten(custom_id, 80)!r} nests arrays or objects "
                f"more than {MAX_NESTING} levels deep, more than XCom carries; give "
                "FetchResultsOperator a destination= to publish the lines as the API sent them"
            )
        self.items.append(json.loads(line))


class FileSinks:
    """Writes lines to one results file, or one per result type, and with ``split_by_model``
    one per model of a matrix job (``results.<label>.jsonl``, or ``<type>.<label>.jsonl``);
    ``open_more`` opens the file of a key first seen (``other``, a model).

    Lines are gathered per file and written about a MiB at a time (two writes per line cost
    more than the download); :meth:`flush` writes the rest and must come before the files
    are closed.
    """

    chunk = 1 << 20

    def __init__(
        self,
        streams: dict[str, IO[bytes]],
        *,
        split_by_type: bool,
        open_more: Callable[[str], IO[bytes]],
        split_by_model: bool = False,
    ) -> None:
        self.streams = streams
        self.split_by_type = split_by_type
        self.split_by_model = split_by_model
        self.open_more = open_more
        self._pending: dict[str, bytearray] = {}
        self._one: bytearray | None = None
        """The lines of the one file when nothing is split (the common case, kept apart)."""
        if not split_by_type and not split_by_model and "results" in streams:
            self._one = self._pending["results"] = bytearray()

    def __call__(self, record: ResultRecord | None, line: bytes, model: str | None = None) -> None:
        one = self._one
        if one is not None:
            one += line
            one += b"\n"
            if len(one) >= self.chunk:
                self.streams["results"].write(one)
                one.clear()
            return
        if not self.split_by_type:
            key = "results"
        else:
            key = record.result_type if record is not None else OTHER
        if self.split_by_model and model is not None:
            key = f"{key}.{model}"
        pending = self._pending.get(key)
        if pending is None:
            if key not in self.streams:
                self.streams[key] = self.open_more(key)
            pending = self._pending[key] = bytearray()
        pending += line
        pending += b"\n"
        if len(pending) >= self.chunk:
            self.streams[key].write(pending)
            pending.clear()

    def flush(self) -> None:
        """Write every line still gathered to its file."""
        for key, pending in self._pending.items():
            if pending:
                self.streams[key].write(pending)
                pending.clear()


def read_cached_lines(path: Any, stats: ReadStats) -> Iterator[tuple[ResultRecord, bytes]]:
    """The lines the cross-run cache answered for a job (``jobs.cache``), each scanned; counted
    in ``stats.lines``."""
    with open_to_read(path) as stream:
        for number, raw in enumerate(stream, start=1):
            data = raw.rstrip(b"\r\n")
            if not data.strip():
                continue
            record = scan_result_line(data, line_number=number)
            stats.lines += 1
            yield record, data
