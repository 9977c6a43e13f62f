"""Answers are parsed with the cyclic garbage collector paused (``_answers.paused_gc``)."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.api.fakes import Driver, FakeAPI, batch_json, reply


def page(count: int) -> dict[str, Any]:
    data = [batch_json(f"msgbatch_{i:05d}") for i in range(count)]
    return {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]}


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """The generations collected, while every 100 allocations make one fall due."""
    seen: list[int] = []

    def note(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    threshold = gc.get_threshold()
    was = gc.isenabled()
    gc.enable()
    gc.set_threshold(100, 1, 1)
    gc.callbacks.append(note)
    try:
        yield seen
    finally:
        gc.callbacks.remove(note)
        gc.set_threshold(*threshold)
        if not was:
            gc.disable()


def test_a_page_of_a_thousand_batches_is_parsed_without_a_collection(
    connect: Callable[..., Driver], collections: list[int]
) -> None:
    client = connect(FakeAPI(reply(200, page(1000))))
    answers = []

    def parse_and_look(*args: Any) -> Any:
        collections.clear()
        result = original(*args)
        answers.append(list(collections))
        return result

    original = client.client._parse  # type: ignore[attr-defined]
    client.client._parse = parse_and_look  # type: ignore[attr-defined]
    listed = client.list_page(limit=1000)
    assert len(listed.data) == 1000
    # Unpaused, the parse runs dozens of collections here; paused, at most the one that fell
    # due runs as the collector comes back.
    [during] = answers
    assert len(during) <= 1, f"the collector ran during the parse: {during}"
    assert gc.isenabled()
    collections.clear()
    gc.collect()
    assert collections  # collecting works again


def test_a_collector_turned_off_stays_off(connect: Callable[..., Driver]) -> None:
    client = connect(FakeAPI(reply(200, page(3))))
    gc.disable()
    try:
        assert len(client.list_page(limit=3).data) == 3
        assert not gc.isenabled()
    finally:
        gc.enable()
