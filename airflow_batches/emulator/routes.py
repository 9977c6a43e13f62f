"""The six operations of the Message Batches API."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import string
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from airflow_batches.api._models import DeletedMessageBatch, MessageBatchPage
from airflow_batches.api._prompt import prompt_breakpoints
from airflow_batches.api._rules import load_rules_table
from airflow_batches.emulator.bodies import MESSAGE_MAX_BODY_BYTES, read_body, stream_body
from airflow_batches.emulator.clock import to_datetime
from airflow_batches.emulator.errors import APIError, invalid_request, json_response
from airflow_batches.emulator.intake import scan_body, spool_body
from airflow_batches.emulator.service import Emulator, emulator_of
from airflow_batches.emulator.store import BatchFiles, BatchRecord

_ALPHABET = string.ascii_letters + string.digits
_ANSWER = {
    "invalid_request": "invalid_request_error",
    "conflict": "conflict_error",
    "not_found": "not_found_error",
}
_RESULTS_CHUNK = 64 * 1024
_RANGE = re.compile(r"bytes\s*=\s*(?P<first>\d*)\s*-\s*(?P<last>\d*)", re.IGNORECASE)


def new_batch_id() -> str:
    return "msgbatch_01" + "".join(secrets.choice(_ALPHABET) for _ in range(22))


def _batch_response(emulator: Emulator, request: Request, record: BatchRecord) -> Response:
    view = record.to_api(emulator.clock.now(), str(request.base_url))
    return json_response(view.model_dump_json())


async def create_batch(request: Request) -> Response:
    emulator = emulator_of(request)
    caller = emulator.caller(request)
    cfg = emulator.config
    emulator.store.bump(caller.workspace, "create_calls")
    incoming = emulator.store.incoming_dir / uuid.uuid4().hex
    incoming.mkdir()
    files = BatchFiles(incoming)
    try:
        body = stream_body(request, cfg.max_body_bytes, "max_body_bytes")
        size = await spool_body(body, files.body)
        count = await asyncio.to_thread(
            scan_body,
            files,
            max_requests=cfg.max_requests_per_batch,
            too_many_error=cfg.too_many_requests,
        )
        queued = emulator.engine.queued()
        if queued + count > cfg.max_queued_requests:
            raise APIError(
                "rate_limit_error",
                f"Too many requests are waiting to be processed ({queued} queued, "
                f"{count} more would exceed the limit of {cfg.max_queued_requests})",
                headers={"retry-after": "60"},
            )
        batch_id = new_batch_id()
        os.replace(incoming, emulator.store.batches_dir / batch_id)
    except ClientDisconnect:
        shutil.rmtree(incoming, ignore_errors=True)
        return Response(status_code=499)
    except BaseException:
        shutil.rmtree(incoming, ignore_errors=True)
        raise
    now = emulator.clock.now()
    record = emulator.store.insert(
        BatchRecord(
            seq=0,
            id=batch_id,
            workspace=caller.workspace,
            api_version=caller.api_version,
            betas=list(caller.betas),
            user_profile_id=request.headers.get("anthropic-user-profile-id") or None,
            n_requests=count,
            body_bytes=size,
            created_at=now,
            expires_at=now + cfg.expiry_hours * 3600,
            retention_seconds=cfg.retention_days * 86400,
        )
    )
    emulator.engine.add(record)
    emulator.store.bump(caller.workspace, "batches_created")
    emulator.store.bump(caller.workspace, "requests_received", count)
    return _batch_response(emulator, request, record)


def _cursor(emulator: Emulator, name: str, value: str | None) -> int | None:
    if not value:
        return None
    seq = emulator.store.seq_of(value)
    if seq is None:
        raise invalid_request(f"{name}: no message batch with id {value!r}")
    return seq


async def list_batches(request: Request) -> Response:
    emulator = emulator_of(request)
    caller = emulator.caller(request)
    query = request.query_params
    try:
        limit = int(query.get("limit", "20"))
    except ValueError:
        raise invalid_request("limit: Input should be a valid integer") from None
    if not 1 <= limit <= 1000:
        raise invalid_request("limit: Input should be between 1 and 1000")
    before = _cursor(emulator, "before_id", query.get("before_id"))
    after = _cursor(emulator, "after_id", query.get("after_id"))
    if before is not None and after is not None:
        raise invalid_request("before_id, after_id: give at most one of them")
    records, has_more = emulator.store.page(
        caller.workspace, limit=limit, before_seq=before, after_seq=after
    )
    now, base = emulator.clock.now(), str(request.base_url)
    data = [r.to_api(now, base) for r in records]
    page = MessageBatchPage(
        data=data,
        has_more=has_more,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
    )
    return json_response(page.model_dump_json())


async def retrieve_batch(request: Request) -> Response:
    emulator = emulator_of(request)
    caller = emulator.caller(request)
    record = emulator.visible_batch(caller, request.path_params["batch_id"], fresh_glitch=True)
    return _batch_response(emulator, request, record)


async def cancel_batch(request: Request) -> Response:
    emulator = emulator_of(request)
    caller = emulator.caller(request)
    record = emulator.visible_batch(caller, request.path_params["batch_id"])
    if record.is_ended:
        answer = emulator.config.cancel_ended
        if answer != "ok":
            raise APIError(
                _ANSWER[answer],
                f"Message batch {record.id} has already ended; it can no longer be canceled",
            )
    elif record.status == "in_progress":
        emulator.engine.cancel(record)
    return _batch_response(emulator, request, record)


async def delete_batch(request: Request) -> Response:
    emulator = emulator_of(request)
    caller = emulator.caller(request)
    record = emulator.visible_batch(caller, request.path_params["batch_id"])
    if not record.is_ended:
        answer = emulator.config.delete_unfinished
        if answer != "allow":
            raise APIError(
                _ANSWER[answer],
                f"Message batch {record.id} cannot be deleted while it is "
                f"{record.status}: cancel it and wait until it has ended",
            )
        emulator.engine.drop(record)
    emulator.store.delete(record, emulator.clock.now())
    await asyncio.to_thread(emulator.engine.remove_files, record)
    deleted = DeletedMessageBatch(id=record.id, type="message_batch_deleted")
    return json_response(deleted.model_dump_json())


async def batch_results(request: Request) -> Response:
    emulator = emulator_of(request)
    caller = emulator.caller(request)
    record = emulator.visible_batch(caller, request.path_params["batch_id"], fresh_glitch=True)
    cfg = emulator.config
    if not record.is_ended:
        raise APIError(
            _ANSWER[cfg.results_unfinished],
            f"Message batch {record.id} is still {record.status}; results are available "
            "once it has ended",
        )
    files = emulator.store.files(record.id)
    archived = record.archived_at(emulator.clock.now())
    try:
        if archived is not None or record.results_purged:
            raise FileNotFoundError
        handle = files.results.open("rb")
    except FileNotFoundError:
        archived_at = to_datetime(record.archive_at)
        raise APIError(
            _ANSWER[cfg.results_archived],
            f"The results of message batch {record.id} are no longer available: they were "
            f"archived at {archived_at.isoformat()}, "
            f"{timedelta(seconds=record.retention_seconds).days} days after creation",
        ) from None
    length = record.results_bytes
    try:
        first, last = _byte_range(request, length)
    except BaseException:
        handle.close()
        raise
    headers = {"content-length": str(last - first + 1), "accept-ranges": "bytes"}
    status = 200
    if (first, last) != (0, length - 1):
        status = 206
        headers["content-range"] = f"bytes {first}-{last}/{length}"

    async def body() -> AsyncIterator[bytes]:
        remaining = last - first + 1
        try:
            if first:
                handle.seek(first)
            while remaining > 0:
                chunk = handle.read(min(_RESULTS_CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                yield chunk
        finally:
            handle.close()

    return StreamingResponse(
        body(), status_code=status, media_type="application/x-jsonl", headers=headers
    )


def _byte_range(request: Request, length: int) -> tuple[int, int]:
    """The first and last byte to send: the whole file unless one satisfiable range is asked.

    As RFC 9110 allows, a malformed or multiple ``Range`` is ignored (200, everything), and so
    is one with an ``If-Range``: the emulator sends no validator, so none can match. A range
    starting at or beyond the end is a 416 naming the length.
    """
    whole = (0, length - 1)
    value = request.headers.get("range", "").strip()
    if not value or "if-range" in request.headers:
        return whole
    match = _RANGE.fullmatch(value)
    if match is None:
        return whole
    start, end = match["first"], match["last"]
    if start:
        first, last = int(start), min(int(end), length - 1) if end else length - 1
        if end and int(end) < first:
            return whole
    elif end:  # the last N bytes; N = 0 is unsatisfiable
        first, last = (max(0, length - int(end)) if int(end) else length), length - 1
    else:
        return whole
    if first >= length:
        raise APIError(
            "invalid_request_error",
            f"Range {value!r} is beyond the end of the results ({length} bytes)",
            status=416,
            headers={"content-range": f"bytes */{length}"},
        )
    return first, last


async def count_tokens(request: Request) -> Response:
    """Input tokens of one Messages request, counted as the emulator bills them."""
    emulator = emulator_of(request)
    emulator.caller(request)
    emulator.calls["count_tokens"] += 1
    try:
        params = json.loads(
            await read_body(request, MESSAGE_MAX_BODY_BYTES, "a Messages request, 32 MB")
        )
    except ValueError:
        raise invalid_request("The request body is not valid JSON") from None
    if not isinstance(params, dict):
        raise invalid_request("The request body must be a JSON object")
    model = params.get("model")
    if not isinstance(model, str) or not model:
        raise invalid_request("model: Field required")
    if not isinstance(params.get("messages"), list) or not params["messages"]:
        raise invalid_request("messages: Field required")
    per_token = load_rules_table().tokenizer(model).bytes_per_token
    _, total = prompt_breakpoints(params, model, per_token)
    return json_response(json.dumps({"input_tokens": total}))


routes = [
    Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
    Route("/v1/messages/batches", create_batch, methods=["POST"]),
    Route("/v1/messages/batches", list_batches, methods=["GET"]),
    Route("/v1/messages/batches/{batch_id}", retrieve_batch, methods=["GET"]),
    Route("/v1/messages/batches/{batch_id}", delete_batch, methods=["DELETE"]),
    Route("/v1/messages/batches/{batch_id}/cancel", cancel_batch, methods=["POST"]),
    Route("/v1/messages/batches/{batch_id}/results", batch_results, methods=["GET"]),
]
