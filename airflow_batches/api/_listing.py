"""A list page read leanly: each batch kept as the JSON the API sent, parsed only when needed.

For a reader that re-reads the same thousands of batches every second (the triggerer's shared
status poller), most batches have not changed since the last read. Parsing each one into a
:class:`MessageBatch` costs time, and the thousand models of a page are what the garbage
collector kept finding alive and promoting, each promotion bringing its next full pass over the
whole process nearer (docs/performance.md). A :class:`ListedPage` holds, per batch, its id, its
creation time and its raw JSON, all in objects the collector does not track; a reader compares
the raw JSON with what it last read and parses only the batches that changed
(:meth:`ListedBatch.parse`, the full model's validation).
"""

from __future__ import annotations

from datetime import datetime

import httpx
import msgspec
import pydantic

from airflow_batches.api._errors import ResponseValidationError
from airflow_batches.api._models import MessageBatch, check_id, problems, safe_request_id

__all__ = ["ListedBatch", "ListedPage", "decode_listed_page"]


class ListedBatch(msgspec.Struct, gc=False, frozen=True):
    """One batch of a list page: what finding it needs, and its JSON as sent."""

    id: str
    created_at: datetime
    raw: msgspec.Raw
    """The batch's JSON; refers to the page's body (``raw.copy()`` to keep it apart)."""

    def parse(self) -> MessageBatch:
        """The batch as a model, validated as every answer is; ResponseValidationError if not."""
        try:
            return MessageBatch.model_validate_json(memoryview(self.raw).tobytes())
        except pydantic.ValidationError as exc:
            raise ResponseValidationError(
                f"batch {self.id} of a list page is not a MessageBatch: {problems(exc)}"
            ) from None


class ListedPage(msgspec.Struct, gc=False):
    data: list[ListedBatch]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None


class _Page(msgspec.Struct, gc=False):
    data: list[msgspec.Raw]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None


class _Stamp(msgspec.Struct, gc=False):
    id: str
    created_at: datetime


_page = msgspec.json.Decoder(_Page)
_stamp = msgspec.json.Decoder(_Stamp)


def decode_listed_page(response: httpx.Response) -> ListedPage:
    """The page of a list call's 2xx answer; ResponseValidationError naming the call if the
    page, or a batch's id or creation time, is not what the API documents (an id is checked
    as every id from the server is: ``_models.check_id``)."""
    try:
        page = _page.decode(response.content)
        data = []
        for raw in page.data:
            stamp = _stamp.decode(raw)
            check_id(stamp.id)
            if stamp.created_at.tzinfo is None:
                raise msgspec.ValidationError(f"batch {stamp.id}: created_at has no time zone")
            data.append(ListedBatch(stamp.id, stamp.created_at, raw))
        for cursor in (page.first_id, page.last_id):
            if cursor is not None:
                check_id(cursor)
    except (msgspec.DecodeError, ValueError, RecursionError) as exc:
        # A ValidationError is a DecodeError; a RecursionError is a page nesting deeper than
        # the parser may go, which no page of the API does.
        reason = "it nests too deep to parse" if isinstance(exc, RecursionError) else exc
        raise ResponseValidationError(
            f"{response.request.method} {response.request.url} answered "
            f"{response.status_code} with a body that is not a MessageBatchPage: {reason}",
            request_id=safe_request_id(response.headers.get("request-id")),
        ) from None
    return ListedPage(data, page.has_more, page.first_id, page.last_id)
