"""``AsyncClient.list_page_listed``: a list page kept as raw JSON per batch, parsed on demand."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import httpx
import pytest

from airflow_batches.api import AsyncClient, MessageBatch, ResponseValidationError
from tests.api.fakes import API_KEY, BASE_URL, FakeAPI, batch_json, reply


def page(*batches: dict[str, Any]) -> dict[str, Any]:
    ids = [b["id"] for b in batches]
    return {"data": list(batches), "has_more": True, "first_id": ids[0], "last_id": ids[-1]}


def listed(body: Any, status: int = 200) -> Any:
    api = FakeAPI(reply(status, body))

    async def run() -> Any:
        async with AsyncClient(api_key=API_KEY, base_url=BASE_URL, transport=api.transport) as c:
            return await c.list_page_listed(limit=3, after_id="msgbatch_0")

    result = asyncio.run(run())
    assert api.last.url.params["limit"] == "3" and api.last.url.params["after_id"] == "msgbatch_0"
    return result


def test_each_batch_is_kept_raw_untracked_and_parses_to_the_model() -> None:
    one, two = batch_json("msgbatch_a"), batch_json("msgbatch_b", "ended")
    result = listed(page(one, two))
    assert [b.id for b in result.data] == ["msgbatch_a", "msgbatch_b"]
    assert (result.has_more, result.first_id, result.last_id) == (True, "msgbatch_a", "msgbatch_b")
    assert result.data[0].created_at.tzinfo is not None
    assert not any(gc.is_tracked(b) for b in result.data)  # nothing for the collector to scan
    parsed = result.data[1].parse()
    assert isinstance(parsed, MessageBatch) and parsed.is_ended
    assert parsed == MessageBatch.model_validate(two)
    again = listed(page(one, two))
    assert again.data[0].raw == result.data[0].raw  # the same JSON compares equal
    assert again.data[0].raw != again.data[1].raw


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"data": [{"created_at": "2026-11-01T10:00:00Z"}], "has_more": False}, "id"),
        (page(batch_json(created_at="2026-11-01T10:00:00")), "time zone"),
        ({"data": "nope", "has_more": False}, "data"),
        ({"data": []}, "has_more"),
    ],
)
def test_a_page_that_is_not_a_page_names_the_call(body: Any, named: str) -> None:
    with pytest.raises(ResponseValidationError) as caught:
        listed(body)
    assert "GET " in str(caught.value) and "/v1/messages/batches" in str(caught.value)
    assert named in str(caught.value)


def test_a_page_that_is_not_json_names_the_call() -> None:
    api = FakeAPI(lambda request: httpx.Response(200, content=b"<html>proxy</html>"))

    async def run() -> Any:
        async with AsyncClient(api_key=API_KEY, base_url=BASE_URL, transport=api.transport) as c:
            return await c.list_page_listed()

    with pytest.raises(ResponseValidationError, match="not a MessageBatchPage"):
        asyncio.run(run())


def test_a_bad_batch_fails_only_when_it_is_parsed() -> None:
    bad = batch_json("msgbatch_bad", processing_status="exploded")
    result = listed(page(batch_json("msgbatch_ok"), bad))
    assert result.data[0].parse().id == "msgbatch_ok"
    with pytest.raises(ResponseValidationError, match="batch msgbatch_bad of a list page"):
        result.data[1].parse()
