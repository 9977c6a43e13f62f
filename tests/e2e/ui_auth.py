"""The live UI test's auth manager: Airflow's SimpleAuthManager (its users, roles, passwords
and login page), with DAGs hidden from some users the way FAB's per-DAG permissions or a team
would hide them. ``LIVE_UI_HIDDEN_DAGS`` maps a user to the DAG ids they may not see.

Every per-DAG decision of the api-server, the plugin's included, goes through
``is_authorized_dag`` (``get_authorized_dag_ids`` asks it DAG by DAG on every release), so
hiding a DAG here hides it everywhere: the UI's lists, the REST API, the plugin's page.
"""

from __future__ import annotations

import json
import os
from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

HIDDEN_ENV = "LIVE_UI_HIDDEN_DAGS"


class DagScopedAuthManager(SimpleAuthManager):
    def is_authorized_dag(
        self,
        *,
        method: Any,
        user: Any,
        access_entity: Any = None,
        details: Any = None,
    ) -> bool:
        hidden = json.loads(os.environ.get(HIDDEN_ENV) or "{}").get(user.get_name(), [])
        if details is not None and details.id in hidden:
            return False
        allowed: bool = super().is_authorized_dag(
            method=method, user=user, access_entity=access_entity, details=details
        )
        return allowed
