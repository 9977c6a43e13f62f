"""The sensor's tests run real DAGs as the operators' tests do: the same runner, the same
session database (``tests/operators/conftest.py`` defines both)."""

from __future__ import annotations

from tests.operators.conftest import airflow_db, dag_runner

__all__ = ["airflow_db", "dag_runner"]
