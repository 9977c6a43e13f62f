"""Reading a job's results line by line, with every check a result line gets.

:class:`Reader` reads one batch through the one download path (``_download``) and checks
each line: blank lines are skipped with a warning, invalid UTF-8 and malformed JSON are
errors naming the line, a line replayed byte for byte is kept once (with a warning), two
different lines for one custom_id are an error, an unknown result type is kept verbatim and
counted as ``other``. At the end of the batch the number of distinct lines must be its request
count and, when the job knows it, the set of custom_ids must be the one it submitted in that
batch: the results of a batch that is not the job's are never taken for its own.

:func:`stream_final_lines` feeds a sink the last-attempt line of every request, newest attempt
first; :func:`collect_resubmittable` lists the failures worth resending.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

import msgspec

from airflow_batches.api import BatchesError, Client, MessageBatch
from airflow_batches.api._format import shorten
from airflow_batches.api._models import ErrorType
from airflow_batches.jobs._descriptor import BatchInfo
from airflow_batches.jobs._ids import IdsDigest, SeenLines, id_hash
from airflow_batches.jobs._nesting import decode_deep
from airflow_batches.jobs.results._download import DownloadPolicy, read_batch_lines
from airflow_batches.jobs.results._scan import (
    MalformedResultLineError,
    ResultRecord,
    UnknownResultTypeError,
    scan_result_line,
)

KNOWN_ERROR_TYPES = frozenset(get_args(ErrorType))
OTHER = "other"
"""Where an unknown result type or error type is counted."""

RETRYABLE_ERROR_TYPES = frozenset(
    {"api_error", "overloaded_error", "rate_limit_error", "timeout_error"}
)
"""Errored results worth resending as they are. ``invalid_request_error`` never is: the
request must be fixed first. Authentication, permission, billing and not-found errors would
fail again the same way."""


class IncompleteResultsError(BatchesError):
    """The lines fetched do not match the requests submitted; nothing was published."""


class ForeignResultsError(IncompleteResultsError):
    """A batch's results are not the requests the job submitted in it."""

    def __init__(self, message: str, *, batch_id: str = "") -> None:
        super().__init__(message)
        self.batch_id = batch_id

    def _state(self) -> dict[str, Any]:
        return {"message": self.message, "batch_id": self.batch_id}


class XComTooLargeError(BatchesError):
    """The results do not fit XCom: past its size limit, or a line nesting deeper than a
    Python object can be built from."""


@dataclass
class ReadStats:
    """What the line checks saw, for the manifest and the log."""

    lines: int = 0
    superseded: int = 0
    replayed: int = 0
    blank: int = 0
    usage_missing: int = 0
    other: int = 0
    unknown_types: dict[str, int] = field(default_factory=dict)
    """Unknown result types and error types seen, by name."""

    def unknown(self, name: str) -> None:
        self.unknown_types[name] = self.unknown_types.get(name, 0) + 1


Line = tuple[ResultRecord | None, bytes]
"""A checked line: its record (None for an unknown result type) and its bytes."""
LineSink = Callable[[ResultRecord | None, bytes], None]
PublishSink = Callable[[ResultRecord | None, bytes, str | None], None]
"""What a publishing sink receives: the record, the line as published, its matrix model."""


@dataclass
class Reader:
    """How batches are read: the client, the download budget, the log, the running stats."""

    client: Client
    log: Any
    policy: DownloadPolicy = field(default_factory=DownloadPolicy)
    stats: ReadStats = field(default_factory=ReadStats)
    job_id: str = ""

    def lines(self, info: BatchInfo, batch: MessageBatch) -> Iterator[Line]:
        """The checked lines of one batch; see the module docstring."""
        seen = SeenLines(info.request_count)
        put = seen.put
        digest = IdsDigest()
        stats = self.stats
        batch_id = info.id
        for number, data, key in read_batch_lines(
            self.client, batch, policy=self.policy, log=self.log
        ):
            if not data or data.isspace():
                stats.blank += 1
                self.log.warning("Results of batch %s: line %d is blank; skipped", batch_id, number)
                continue
            if not data.isascii():
                _check_utf8(data, batch_id, number)
            record: ResultRecord | None
            try:
                record = scan_result_line(data, batch_id=batch_id, line_number=number)
                custom_id = record.custom_id
            except UnknownResultTypeError as exc:
                record, custom_id = None, exc.custom_id
            value = id_hash(custom_id)
            previous = put(value, key)
            if previous:
                if previous == key:
                    stats.replayed += 1
                    self.log.warning(
                        "Results of batch %s: line %d repeats the line of custom_id %r byte for "
                        "byte; kept once",
                        batch_id,
                        number,
                        custom_id,
                    )
                    continue
                raise IncompleteResultsError(
                    f"batch {batch_id} returned two different lines for custom_id "
                    f"{shorten(custom_id, 80)!r} (the second at line {number}); nothing was "
                    "published"
                )
            digest.add_hash(value)
            if record is None or record.usage_missing or record.result_type == "errored":
                record = self._note(record, custom_id, batch_id, number, data)
            yield record, data
        self._check_batch(info, len(seen), digest)

    def _note(
        self, record: ResultRecord | None, custom_id: str, batch_id: str, number: int, data: bytes
    ) -> ResultRecord | None:
        stats = self.stats
        if record is None:
            kind = _result_type_of(data)
            stats.other += 1
            stats.unknown(kind)
            self.log.warning(
                "Results of batch %s: line %d (custom_id %r) has the unknown result type %r; "
                "kept as it is and counted as %r",
                batch_id,
                number,
                shorten(custom_id, 80),
                kind,
                OTHER,
            )
            return None
        if record.result_type == "errored" and record.error_type not in KNOWN_ERROR_TYPES:
            stats.unknown(record.error_type or "unknown")
            self.log.warning(
                "Results of batch %s: line %d (custom_id %r) has the unknown error type %r; "
                "counted as %r and not resent",
                batch_id,
                number,
                shorten(custom_id, 80),
                record.error_type,
                OTHER,
            )
            return msgspec.structs.replace(record, error_type=OTHER)
        if record.usage_missing:
            stats.usage_missing += 1
            self.log.warning(
                "Results of batch %s: line %d (custom_id %r) succeeded without usage; the "
                "job's cost is incomplete",
                batch_id,
                number,
                shorten(custom_id, 80),
            )
        return record

    def _check_batch(self, info: BatchInfo, count: int, digest: IdsDigest) -> None:
        if count != info.request_count:
            raise IncompleteResultsError(
                f"batch {info.id} returned {count} result line(s) for "
                f"{info.request_count} request(s); nothing was published"
            )
        if info.ids_digest and digest.hexdigest() != info.ids_digest:
            raise ForeignResultsError(
                f"batch {info.id} does not hold the requests job {self.job_id or '?'} "
                f"submitted in it: its {count} custom_id(s) are not the job's"
                f"{' (the batch was adopted after a lost create answer)' if info.adopted else ''}"
                "; nothing was published",
                batch_id=info.id,
            )


def _check_utf8(data: bytes, batch_id: str, number: int) -> None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedResultLineError(
            f"invalid UTF-8 at byte {exc.start}",
            batch_id=batch_id,
            line_number=number,
            excerpt=data[: min(exc.start, 60)].decode("utf-8", "replace"),
        ) from None


class _TypeOnly(msgspec.Struct):
    type: str = "?"


class _ResultOnly(msgspec.Struct):
    result: _TypeOnly


_decode_result_type = msgspec.json.Decoder(_ResultOnly).decode


def _result_type_of(data: bytes) -> str:
    try:
        return decode_deep(_decode_result_type, data)[0].result.type
    except msgspec.DecodeError:
        return "?"


Attempts = Sequence[Any]
"""Attempts (``_fetch.Attempt``): each has ``number`` and ``batches: list[BatchInfo]``."""


def stream_final_lines(
    reader: Reader,
    attempts: Attempts,
    known: Mapping[str, MessageBatch],
    sink: LineSink,
    *,
    on_batch: Callable[[str], None] | None = None,
    on_superseded: Callable[[str], None] | None = None,
) -> ReadStats:
    """Feed ``sink`` the last-attempt line of every request.

    Attempts are read newest first: the custom_ids seen in attempt ``k + 1`` are the lines of
    attempt ``k`` to leave out (they were resent). ``on_batch`` is told the id of each batch
    before its lines, ``on_superseded`` the custom_id of each line left out.
    """
    stats = reader.stats
    later: set[str] = set()
    for attempt in reversed(attempts):
        this: set[str] = set()
        for info in attempt.batches:
            if on_batch is not None:
                on_batch(info.id)
            lines = reader.lines(info, known[info.id])
            if not later and attempt.number == 1:
                # The first attempt, and no later one answered any of its requests: nothing
                # to leave out, the lines go straight to the sink.
                for record, data in lines:
                    stats.lines += 1
                    sink(record, data)
                continue
            for record, data in lines:
                custom_id = record.custom_id if record is not None else custom_id_of(data)
                if attempt.number > 1:
                    this.add(custom_id)
                if custom_id in later:
                    stats.superseded += 1
                    if on_superseded is not None:
                        on_superseded(custom_id)
                    continue
                stats.lines += 1
                sink(record, data)
        later = this
    return stats


class _CustomId(msgspec.Struct):
    custom_id: str


_decode_custom_id = msgspec.json.Decoder(_CustomId).decode


def custom_id_of(data: bytes) -> str:
    return decode_deep(_decode_custom_id, data)[0].custom_id


def should_resubmit(record: ResultRecord | None, error_types: frozenset[str]) -> bool:
    if record is None:
        return False
    if record.result_type == "expired":
        return True
    return record.result_type == "errored" and (record.error_type or "") in error_types


def collect_resubmittable(
    reader: Reader,
    attempt: Any,
    known: Mapping[str, MessageBatch],
    error_types: frozenset[str],
) -> tuple[set[str], dict[str, int]]:
    """custom_ids of the attempt's results worth resending, and their count by reason."""
    ids: set[str] = set()
    reasons: dict[str, int] = {}
    for info in attempt.batches:
        for record, _ in reader.lines(info, known[info.id]):
            if record is not None and should_resubmit(record, error_types):
                ids.add(record.custom_id)
                reason = record.error_type or record.result_type
                reasons[reason] = reasons.get(reason, 0) + 1
    return ids, reasons


# --- sinks ------------------------------------------------------------------------------------
