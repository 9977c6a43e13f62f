"""A local emulator of the Message Batches API (see docs/emulator.md).

It imports nothing from Airflow: only the standard library, Starlette, uvicorn, pydantic,
msgspec and the wire models of ``airflow_batches.api``.
"""

from airflow_batches.emulator.app import ADMIN_PREFIX, create_app
from airflow_batches.emulator.config import EmulatorConfig, FaultRates
from airflow_batches.emulator.responders import ResponderContext, default_responder
from airflow_batches.emulator.validation import RequestError

__all__ = [
    "ADMIN_PREFIX",
    "EmulatorConfig",
    "FaultRates",
    "RequestError",
    "ResponderContext",
    "create_app",
    "default_responder",
]
