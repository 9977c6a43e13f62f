"""The provider as Airflow sees it: entry point, ProvidersManager, `airflow providers list`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import Distribution, distribution, distributions, entry_points
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


# -- what a provider ships: every extra link, the license, the metadata ---------------------

REPO = Path(__file__).resolve().parents[1]
SHELLS = ("airflow_batches.operators", "airflow_batches.sensors")
# The SHA-256 of the Apache License 2.0 as the ASF publishes it (LICENSE-2.0.txt).
APACHE_2_SHA256 = "c71d239df91726fc519c6eb72d318ec65820627232b2f796219e87dcf35d0ab4"


def _shell_modules() -> list[Any]:
    import importlib
    import pkgutil

    found = []
    for name in SHELLS:
        package = importlib.import_module(name)
        for info in pkgutil.iter_modules(package.__path__, prefix=f"{name}."):
            found.append(importlib.import_module(info.name))
    return found


def _dotted(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def test_provider_info_lists_every_extra_link() -> None:
    from airflow_batches._compat import BaseOperator, BaseOperatorLink

    used: set[str] = set()
    defined: set[str] = set()
    for module in _shell_modules():
        for value in vars(module).values():
            if not isinstance(value, type) or value.__module__ != module.__name__:
                continue
            if issubclass(value, BaseOperatorLink):
                defined.add(_dotted(value))
            if issubclass(value, BaseOperator):
                used |= {_dotted(type(link)) for link in value.operator_extra_links}
    listed = get_provider_info()["extra-links"]
    assert len(listed) == len(set(listed))
    assert "airflow_batches.operators._links.EvalReportLink" in used
    assert used <= defined, "an operator uses a link class defined outside the package"
    assert defined == set(listed), "get_provider_info()['extra-links'] must list every link"


def test_provider_info_names_every_operator_and_sensor_module() -> None:
    info = get_provider_info()
    entries = [*info["operators"], *info["sensors"]]
    listed = {module for entry in entries for module in entry["python-modules"]}
    names = (m.__name__ for m in _shell_modules())
    assert listed == {n for n in names if not n.rsplit(".", 1)[1].startswith("_")}


def test_airflow_loads_the_extra_links(manager: Any) -> None:
    loaded = {name for name in manager.extra_links_class_names if name.startswith("airflow_")}
    assert loaded == set(get_provider_info()["extra-links"])


def test_license_file_is_the_apache_license_2() -> None:
    import hashlib

    license_file = REPO / "LICENSE"
    assert hashlib.sha256(license_file.read_bytes()).hexdigest() == APACHE_2_SHA256


def _installed() -> Distribution:
    """What pip installed (a wheel, or an editable install): the first ``.dist-info`` found,
    not the ``.egg-info`` an editable build leaves in the source tree."""
    for dist in distributions(name=PACKAGE):
        if any(f.parts[0].endswith(".dist-info") for f in dist.files or []):
            return dist
    raise AssertionError(f"{PACKAGE} is not installed")


def test_distribution_metadata_carries_the_license_and_classifiers() -> None:
    dist = _installed()
    metadata = dist.metadata
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    # PEP 639: the license file travels in the distribution's metadata folder.
    assert dist.read_text("licenses/LICENSE") == (REPO / "LICENSE").read_text()
    classifiers = set(metadata.get_all("Classifier") or [])
    assert {
        "Framework :: Apache Airflow",
        "Framework :: Apache Airflow :: Provider",
        "Programming Language :: Python :: 3.11",
    } <= classifiers
    assert metadata["Requires-Python"] == ">=3.11"
    urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL") or [])
    assert urls and all(u.startswith("https://") for u in urls.values())
