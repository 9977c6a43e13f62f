"""The Airflow names whose home moved between releases, imported from wherever each has them.

Nothing else in the package imports these names from Airflow directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import (
    Asset,
    BaseHook,
    BaseOperator,
    BaseOperatorLink,
    BaseSensorOperator,
    ObjectStoragePath,
    conf,
)
from airflow.sdk.definitions.connection import Connection
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
)
from airflow.triggers.base import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "Asset",
    "BaseHook",
    "BaseOperator",
    "BaseOperatorLink",
    "BaseSensorOperator",
    "BaseTrigger",
    "Connection",
    "Context",
    "ObjectStoragePath",
    "TriggerEvent",
    "conf",
]
