"""Test-wide set-up. Runs before anything imports Airflow."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Every test session gets its own Airflow home: a developer's real AIRFLOW_HOME (and its
# database) is never touched, and parallel sessions never share a SQLite file.
_HOME = Path(tempfile.mkdtemp(prefix="airflow-batches-tests-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_HOME / "dags")
os.environ.pop("AIRFLOW__CORE__SQL_ALCHEMY_CONN", None)
os.environ.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)

pytest_plugins = [
    "airflow_batches.emulator.testing",
    "tests.hostile",
    "tests.lying",
    "tests.seeds",
]
