"""Who may see what: the api-server's own authentication and the auth manager's answers.

A plugin's FastAPI app is not behind Airflow's auth by itself. Every route of the page takes
the user the way the core API's routes do (``get_user``: the ``Authorization: Bearer`` JWT,
else the UI's ``_token`` cookie; 401 without either) and shows only what the auth manager
lets that user read: the DAGs of ``get_authorized_dag_ids(method="GET")``, and of those only
the ones whose task instances and XComs the user may read (``is_authorized_dag`` with
``TASK_INSTANCE`` and ``XCOM``, with the DAG's team where the release has teams). A user who
may not read a DAG sees none of its jobs, nights or reports.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

__all__ = ["Access"]


class Access:
    """What one user may read, asked of the auth manager once per DAG and request."""

    def __init__(self, user: Any, manager: Any | None = None) -> None:
        if manager is None:
            from airflow.api_fastapi.app import get_auth_manager

            manager = get_auth_manager()
        self.user = user
        self.manager = manager
        self._decided: dict[str, bool] = {}

    @property
    def name(self) -> str:
        get_name = getattr(self.user, "get_name", None)
        return str(get_name() if callable(get_name) else "")

    def dags(self) -> set[str]:
        """The DAGs the user may read (the auth manager's own list)."""
        return set(self.manager.get_authorized_dag_ids(user=self.user, method="GET"))

    def may_read_records(self, dag_ids: Iterable[str]) -> set[str]:
        """Those of ``dag_ids`` whose task instances and XComs the user may read too."""
        from airflow.api_fastapi.auth.managers.models.resource_details import (
            DagAccessEntity,
            DagDetails,
        )

        asked = list(dict.fromkeys(dag_ids))
        wanted = [d for d in asked if d not in self._decided]
        teams = _teams(wanted)
        for dag_id in wanted:
            details = DagDetails(id=dag_id, team_name=teams.get(dag_id))
            self._decided[dag_id] = all(
                self.manager.is_authorized_dag(
                    method="GET", user=self.user, access_entity=entity, details=details
                )
                for entity in (DagAccessEntity.TASK_INSTANCE, DagAccessEntity.XCOM)
            )
        return {d for d in asked if self._decided[d]}


def _teams(dag_ids: Collection[str]) -> dict[str, str | None]:
    """Each DAG's team (Airflow 3.2 and later; none on 3.1, which has no teams)."""
    if not dag_ids:
        return {}
    from airflow.models.dag import DagModel

    mapping = getattr(DagModel, "get_dag_id_to_team_name_mapping", None)
    if mapping is None:
        return {}
    found: dict[str, str | None] = mapping(list(dag_ids))
    return found
