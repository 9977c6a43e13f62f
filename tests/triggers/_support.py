"""What the trigger tests share: a connection to the emulator, request lists, trigger runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from airflow_batches.jobs.wait import WaitEvent
from airflow_batches.triggers.batch import BatchTrigger

CONN = "mb_trigger_test"


def requests(n: int) -> list[dict[str, Any]]:
    return [
        {
            "custom_id": f"r{i}",
            "params": {
                "model": "claude-haiku-4-5",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "hi"}],
            },
        }
        for i in range(n)
    ]


def make(ids: list[str], **kw: Any) -> BatchTrigger:
    kw.setdefault("poke_interval", 0.01)
    kw.setdefault("max_poke_interval", 0.02)
    kw.setdefault("conn_id", CONN)
    return BatchTrigger(batch_ids=ids, **kw)


async def first_event(trigger: BatchTrigger) -> WaitEvent:
    async for event in trigger.run():
        return WaitEvent.model_validate(event.payload)
    raise AssertionError("the trigger ended without an event")


class Recorder:
    """A logger that keeps its lines; set as a trigger's ``_log`` to read what it logged."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def _keep(self, level: str, msg: str, *args: Any) -> None:
        self.lines.append((level, msg % args if args else msg))

    def info(self, msg: str, *args: Any) -> None:
        self._keep("info", msg, *args)

    def warning(self, msg: str, *args: Any) -> None:
        self._keep("warning", msg, *args)

    def warnings(self) -> list[str]:
        return [line for level, line in self.lines if level == "warning"]


def recorded(trigger: BatchTrigger) -> Recorder:
    recorder = Recorder()
    trigger._log = recorder  # type: ignore[assignment]  # LoggingMixin's own slot
    return recorder


async def until(condition: Callable[[], bool], limit: float = 10.0) -> None:
    """Let the loop run until ``condition`` holds (a synchronisation point, not a timing)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {limit}s")
        await asyncio.sleep(0.005)
