"""The plugin's app over real DAG runs: ``dag.test()`` against the emulator writes what the
operators record into the session's metadata DB, and the app reads it through FastAPI's
test client. The user and the auth manager are the test's own here (the live-stack test,
tests/e2e/test_live_ui.py, uses Airflow's); everything else is the real thing."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from airflow_batches.ui._access import Access
from tests.operators.conftest import airflow_db  # noqa: F401  (the session's metadata DB)
from tests.operators.test_s3_storage import s3  # noqa: F401  (S3: moto on loopback)


@dataclass(frozen=True)
class User:
    name: str

    def get_name(self) -> str:
        return self.name

    def get_id(self) -> str:
        return self.name


@dataclass
class Manager:
    """An auth manager that lets each user read the DAGs named for them (and, unless named
    in ``no_records``, their task instances and XComs)."""

    dags: Mapping[str, set[str]]
    no_records: Mapping[str, set[str]] = field(default_factory=dict)
    asked: list[tuple[str, str, str]] = field(default_factory=list)

    def get_authorized_dag_ids(self, *, user: User, method: str = "GET") -> set[str]:
        assert method == "GET"
        return set(self.dags.get(user.name, set()))

    def is_authorized_dag(
        self, *, method: str, user: User, access_entity: Any = None, details: Any = None
    ) -> bool:
        self.asked.append((user.name, details.id, access_entity.value))
        allowed = self.dags.get(user.name, set()) - self.no_records.get(user.name, set())
        return method == "GET" and details.id in allowed


@dataclass
class Viewer:
    """The app, and a way to ask it for a page as one user."""

    app: Any
    manager: Manager
    users: dict[str, User] = field(default_factory=dict)

    def get(self, user: str, path: str, **params: Any) -> Any:
        from airflow.api_fastapi.core_api.security import get_user
        from fastapi.testclient import TestClient

        self.app.dependency_overrides[get_user] = lambda: User(user)
        with TestClient(self.app) as client:
            return client.get(path, params=params or None)


@pytest.fixture
def viewer_factory() -> Callable[..., Viewer]:
    def make(manager: Manager, **kwargs: Any) -> Viewer:
        from airflow_batches.ui._app import create_app

        app = create_app(
            kwargs.pop("board", None),
            access_for=lambda user: Access(user, manager=manager),
            root=lambda: "/",
            **kwargs,
        )
        return Viewer(app, manager)

    return make
