"""Answering the requests of a batch: one result line per request, decided by the config.

A worker thread gets a :class:`BatchAnswers` (no shared mutable state), reads each request's
bytes from the batch body at its indexed offset, validates its params as the API would, applies
the configured per-request error rates (fixed by the seed, the batch and the custom_id) and
hands the rest to the responder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import msgspec

from airflow_batches.api._rules import ModelRules
from airflow_batches.emulator.clock import Clock
from airflow_batches.emulator.config import EmulatorConfig
from airflow_batches.emulator.intake import RequestIndex
from airflow_batches.emulator.responders import CacheLedger, Responder, ResponderContext
from airflow_batches.emulator.store import BatchRecord
from airflow_batches.emulator.validation import RequestError, validate_params

log = logging.getLogger(__name__)

SUCCEEDED, ERRORED, CANCELED, EXPIRED = 1, 2, 3, 4

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()

_ERROR_MESSAGES = {
    "invalid_request_error": "Invalid request (injected by the emulator)",
    "authentication_error": "Invalid authentication",
    "billing_error": "Your credit balance is too low",
    "permission_error": "Permission denied",
    "not_found_error": "Not found",
    "rate_limit_error": "Rate limited",
    "timeout_error": "Request timed out",
    "api_error": "Internal server error",
    "overloaded_error": "Overloaded",
}


def stable_id(prefix: str, *parts: str, size: int = 12) -> str:
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=size)
    return prefix + digest.hexdigest()


def _unit(*parts: str) -> float:
    """A uniform number in [0, 1) fixed by ``parts``."""
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True)
class BatchAnswers:
    """What a worker thread needs to answer requests of one batch; no shared mutable state."""

    record: BatchRecord
    index: RequestIndex
    body_fd: int
    config: EmulatorConfig
    responder: Responder
    clock: Clock
    cache: CacheLedger
    rules: ModelRules | None = None
    """The model-rules table for this batch's betas; None when the config switches it off."""

    def run(self, indices: list[int]) -> list[tuple[int, int, bytes]]:
        out = []
        for idx in indices:
            offset, length = self.index[idx]
            raw = os.pread(self.body_fd, length, offset)
            try:
                item = _decoder.decode(raw)
            except msgspec.DecodeError:
                # msgspec refuses what the intake accepts only at the edges (huge integers).
                item = json.loads(raw)
            custom_id = item["custom_id"]
            state, result = self.answer(custom_id, item["params"])
            out.append((idx, state, _encoder.encode({"custom_id": custom_id, "result": result})))
        return out

    def answer(self, custom_id: str, params: Any) -> tuple[int, dict[str, Any]]:
        rec, cfg = self.record, self.config
        try:
            problem = validate_params(
                params,
                api_version=rec.api_version,
                betas=rec.betas,
                user_profile_id=rec.user_profile_id,
                models=cfg.models,
                max_output_tokens=cfg.max_output_tokens,
                rules=self.rules,
            )
            if problem is not None:
                raise problem
            for error_type, rate in sorted(cfg.result_errors.items()):
                if rate and _unit(str(cfg.seed), rec.id, custom_id, error_type) < rate:
                    raise RequestError(error_type, _ERROR_MESSAGES[error_type])
            context = ResponderContext(
                batch_id=rec.id,
                custom_id=custom_id,
                params=params,
                workspace=rec.workspace,
                api_version=rec.api_version,
                betas=tuple(rec.betas),
                now=self.clock.now(),
                message_id=stable_id("msg_", rec.id, custom_id),
                cache=self.cache,
                cache_min_tokens=cfg.cache_min_tokens,
                options=cfg.responder_options,
            )
            message = self.responder(context)
        except RequestError as exc:
            return ERRORED, self.errored(custom_id, exc.error_type, exc.message)
        except Exception:
            log.exception("responder failed on %s/%s", rec.id, custom_id)
            return ERRORED, self.errored(custom_id, "api_error", "Internal server error")
        return SUCCEEDED, {"type": "succeeded", "message": message}

    def errored(self, custom_id: str, error_type: str, message: str) -> dict[str, Any]:
        return {
            "type": "errored",
            "error": {
                "type": "error",
                "error": {"type": error_type, "message": message},
                "request_id": stable_id("req_", self.record.id, custom_id),
            },
        }
