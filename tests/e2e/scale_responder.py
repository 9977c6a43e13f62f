"""The emulator's responder in the scale test: the ``resub`` job's requests fail now and then.

A request whose custom_id names the ``resub`` job ends ``errored`` (``overloaded_error``, which
the fetch resends) with chance ``RATE``, drawn from the batch id and custom_id: the same batch
always fails the same requests, a follow-up batch gets a fresh draw. Everything else gets the
emulator's default answer.
"""

from __future__ import annotations

import hashlib
from typing import Any

from airflow_batches.emulator.responders import (
    RequestError,
    ResponderContext,
    default_responder,
)

RATE = 0.25
MARK = "-resub-"


def answer(ctx: ResponderContext) -> dict[str, Any]:
    if MARK in ctx.custom_id:
        digest = hashlib.sha256(f"{ctx.batch_id}/{ctx.custom_id}".encode()).digest()
        if int.from_bytes(digest[:8], "big") / 2**64 < RATE:
            raise RequestError("overloaded_error", "Overloaded (emulated)")
    return default_responder(ctx)
