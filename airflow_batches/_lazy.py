"""Names a package loads on first access (PEP 562), for the package ``__init__`` files that keep
their import light: ``airflow_batches`` (no Airflow until an Airflow class is used), ``api``
(the prices), ``jobs`` and ``jobs.wait`` (the triggerer imports as little as it can).

Imports nothing of the project, so that any layer may use it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(
    package: str, homes: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``. ``homes`` maps each name to the
    module it comes from (absolute, or relative to the package with a leading dot); a name is
    imported on first access, then kept in the package's namespace (later look-ups skip this).
    """
    namespace = vars(sys.modules[package])

    def get(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home, package), name)
        namespace[name] = value
        return value

    def names() -> list[str]:
        return sorted({*namespace, *namespace.get("__all__", ())})

    return get, names
