"""The provider as Airflow sees it: entry point, ProvidersManager, `airflow providers list`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import distribution, entry_points
from pathlib import Path
from typing import Any

import pytest

import airflow_batches
from airflow_batches.hooks.batches import MessageBatchesHook
from airflow_batches.provider_info import get_provider_info
from tests.airflow_release import HAS_DECLARATIVE_CONNECTION_FORM

PACKAGE = "airflow-batches"
CONN_TYPE = "message_batches"
EXTRAS = ["anthropic_version", "betas", "workspace_id", "default_model", "timeout", "max_retries"]


def test_entry_point_resolves_to_get_provider_info() -> None:
    (point,) = [
        ep
        for ep in entry_points(group="apache_airflow_provider")
        if ep.value.startswith("airflow_batches.")
    ]
    assert point.load() is get_provider_info
    assert point.dist is not None
    assert point.dist.name == PACKAGE


def test_provider_info_describes_this_package() -> None:
    info = get_provider_info()
    assert info["package-name"] == PACKAGE == distribution(PACKAGE).metadata["Name"]
    assert info["versions"][0] == airflow_batches.__version__ == distribution(PACKAGE).version
    assert info["description"]
    (conn_type,) = info["connection-types"]
    assert conn_type["connection-type"] == CONN_TYPE
    assert conn_type["hook-class-name"] == (
        f"{MessageBatchesHook.__module__}.{MessageBatchesHook.__qualname__}"
    )
    assert list(conn_type["conn-fields"]) == EXTRAS
    for name in EXTRAS:
        assert conn_type["conn-fields"][name]["label"]
        assert f"{name}" in conn_type["ui-field-behaviour"]["placeholders"]
    (hooks,) = info["hooks"]
    assert hooks["python-modules"] == [MessageBatchesHook.__module__]


def test_provider_info_matches_airflows_schema() -> None:
    from airflow.providers_manager import _create_provider_info_schema_validator

    errors = list(_create_provider_info_schema_validator().iter_errors(get_provider_info()))
    assert errors == []


@pytest.fixture(scope="module")
def manager() -> Any:
    from airflow.providers_manager import ProvidersManager

    return ProvidersManager()


def test_providers_manager_lists_the_provider(manager: Any) -> None:
    provider = manager.providers[PACKAGE]
    assert provider.version == airflow_batches.__version__
    assert provider.data["package-name"] == PACKAGE


def test_task_runtime_maps_the_connection_type_to_the_hook() -> None:
    try:
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime as Manager
    except ImportError:  # Airflow 3.1: tasks use the core ProvidersManager
        from airflow.providers_manager import ProvidersManager as Manager

    hook_info = Manager().hooks[CONN_TYPE]
    assert hook_info is not None
    assert hook_info.package_name == PACKAGE
    assert hook_info.hook_class_name == "airflow_batches.hooks.batches.MessageBatchesHook"
    assert hook_info.connection_id_attribute_name == "conn_id"
    assert hook_info.hook_name == "Message Batches"
    assert hook_info.connection_testable is True


def test_connection_form_offers_the_type(manager: Any) -> None:
    if not HAS_DECLARATIVE_CONNECTION_FORM:
        # 3.1 builds connection forms from hook methods, and only with wtforms installed (the
        # FAB provider): the generic form it shows instead still makes a working connection.
        assert CONN_TYPE not in manager.field_behaviours
        return
    behaviour = manager.field_behaviours[CONN_TYPE]
    assert behaviour["hidden_fields"] == ["schema", "port", "login", "extra"]
    assert behaviour["relabeling"] == {"host": "Base URL", "password": "API key"}
    assert behaviour["placeholders"]["host"] == "https://api.anthropic.com"
    assert behaviour["placeholders"][f"extra__{CONN_TYPE}__betas"] == "output-300k-2026-03-24"
    widgets = manager.connection_form_widgets
    for name in EXTRAS:
        widget = widgets[f"extra__{CONN_TYPE}__{name}"]
        assert widget.package_name == PACKAGE
        assert widget.field_name == name
        assert widget.is_sensitive is False
    version = widgets[f"extra__{CONN_TYPE}__anthropic_version"].field
    assert version["value"] == "2023-06-01"
    assert version["schema"]["enum"] == ["2023-06-01", "2026-10-21"]
    assert widgets[f"extra__{CONN_TYPE}__max_retries"].field["value"] == 2


def test_airflow_providers_list_shows_it(tmp_path: Path) -> None:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    airflow = Path(sys.executable).with_name("airflow")
    done = subprocess.run(
        [str(airflow), "providers", "list", "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    listed = {p["package_name"]: p for p in json.loads(done.stdout)}
    assert listed[PACKAGE]["version"] == airflow_batches.__version__
    assert listed[PACKAGE]["description"].startswith("Run Message Batches API jobs")
