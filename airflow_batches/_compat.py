"""The Airflow names whose home moved between releases, imported from wherever each has them.

Nothing else in the package imports these names from Airflow directly. The first import of
each pair is where Airflow 3.2 and 3.3 have the name; the fallback is Airflow 3.1's home
(docs/compatibility.md lists the differences between releases).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow import __version__ as AIRFLOW_VERSION
from airflow.providers.standard.triggers.hitl import HITLTrigger
from airflow.sdk import (
    Asset,
    BaseHook,
    BaseOperator,
    BaseOperatorLink,
    BaseSensorOperator,
    ObjectStoragePath,
)
from airflow.sdk.definitions.connection import Connection
from airflow.sdk.exceptions import AirflowException
from airflow.sdk.execution_time.hitl import upsert_hitl_detail
from airflow.triggers.base import BaseTrigger, TriggerEvent

try:
    from airflow.sdk import conf
except ImportError:  # Airflow 3.1: the task SDK has no configuration of its own yet
    from airflow.configuration import conf  # type: ignore[assignment]

try:
    from airflow.sdk.exceptions import (
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSensorTimeout,
        AirflowSkipException,
    )
except ImportError:  # Airflow 3.1: still in airflow.exceptions
    from airflow.exceptions import (  # type: ignore[no-redef,attr-defined]
        AirflowFailException,
        AirflowNotFoundException,
        AirflowSensorTimeout,
        AirflowSkipException,
    )

try:
    from airflow.sdk.plugins_manager import AirflowPlugin
except ImportError:  # Airflow 3.1: plugins are the core's only
    from airflow.plugins_manager import AirflowPlugin  # type: ignore[assignment]

try:
    from airflow.sdk.exceptions import TaskAwaitingInput
except ImportError:  # Airflow 3.1, 3.2: a task waiting for a person defers to HITLTrigger
    TaskAwaitingInput = None  # type: ignore[assignment,misc]

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = [
    "AIRFLOW_VERSION",
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowPlugin",
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
    "HITLTrigger",
    "ObjectStoragePath",
    "TaskAwaitingInput",
    "TriggerEvent",
    "conf",
    "upsert_hitl_detail",
]
