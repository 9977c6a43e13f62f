"""docs/architecture.md stays true: every module named, imports in the documented directions,
no cycle, and the shells reach jobs/ only through its public surfaces."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "airflow_batches"
DOC = ROOT / "docs" / "architecture.md"

STAGES = ("prepare", "cost", "cache", "submit", "wait", "results")
STAGE_MAY_IMPORT = {
    "shared": set(),
    "prepare": {"shared"},
    "cost": {"shared", "prepare"},
    "cache": {"shared", "prepare"},
    "submit": {"shared", "prepare", "cost", "cache"},
    "results": {"shared", "prepare", "cost", "cache", "submit"},
    "wait": set(),
}
"""The stages of jobs/ each stage may import (besides itself and ``api``)."""

LAYER_MAY_IMPORT = {
    "api": {"api"},
    "jobs": {"api", "jobs"},
    "evals": {"api", "jobs", "evals"},
    "emulator": {"api", "emulator"},
}
"""The layers each layer may import; the shells (and the package's top modules) any."""

ANY_LAYER = ("_version", "_lazy")
"""Top modules that import nothing of the project: every layer may import them."""

SHELLS = ("hooks", "operators", "sensors", "triggers", "ui")


@cache
def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path) -> Iterator[str]:
    """Every module of the package ``name`` imports: top level, in functions, under
    TYPE_CHECKING; ``from x import y`` counts ``x.y`` when that is a module."""
    known = modules()
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        found: list[str] = []
        if isinstance(node, ast.Import):
            found = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            found = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        for target in found:
            if target in known and target != name:
                # A package importing its own children re-exports them: not a dependency.
                if path.name == "__init__.py" and target.startswith(f"{name}."):
                    continue
                yield target


def graph() -> dict[str, set[str]]:
    return {name: set(imports_of(name, path)) for name, path in modules().items()}


def stage_of(name: str) -> str | None:
    parts = name.split(".")
    if parts[:2] != ["airflow_batches", "jobs"] or len(parts) < 3:
        return None
    return "shared" if parts[2].startswith("_") else parts[2]


def layer_of(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else None


def test_docs_architecture_names_every_module() -> None:
    doc = DOC.read_text()
    unnamed = []
    for name, path in modules().items():
        if path.name == "__init__.py":
            continue
        stem = path.stem
        if not re.search(rf"(?<![\w.]){re.escape(stem)}(?![\w])", doc) and name not in doc:
            unnamed.append(name)
    assert unnamed == [], f"add a line for each to docs/architecture.md: {unnamed}"


def test_no_import_cycle() -> None:
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(edges.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert cycles == []


def test_layers_and_stages_import_in_the_documented_directions() -> None:
    wrong = []
    for name, targets in graph().items():
        layer = layer_of(name)
        stage = stage_of(name)
        for target in targets:
            allowed = LAYER_MAY_IMPORT.get(layer or "")
            if allowed is not None and layer_of(target) not in {*allowed, *ANY_LAYER}:
                wrong.append(f"{name} -> {target}")
            if stage is None or name == "airflow_batches.jobs":
                continue  # the jobs package's lazy names point at every stage
            other = stage_of(target)
            if other is None or other == stage:
                continue
            if other not in STAGE_MAY_IMPORT[stage]:
                wrong.append(f"{name} -> {target} (stage {stage} may not import {other})")
            elif other != "shared" and target.rsplit(".", 1)[-1].startswith("_"):
                wrong.append(f"{name} -> {target} (through the stage's __init__, please)")
    assert wrong == []


def test_the_shells_and_evals_use_only_the_public_surfaces_of_jobs() -> None:
    private = [
        f"{name} -> {target}"
        for name, targets in graph().items()
        if layer_of(name) in (*SHELLS, "evals")
        for target in targets
        if target.startswith("airflow_batches.jobs.")
        and any(part.startswith("_") for part in target.split(".")[2:])
    ]
    assert private == []


def test_each_stage_has_a_public_surface() -> None:
    import importlib

    for stage in STAGES:
        package = importlib.import_module(f"airflow_batches.jobs.{stage}")
        assert package.__doc__, stage
        names = package.__all__
        assert len(names) == len(set(names)), stage
        for name in names:
            assert getattr(package, name) is not None, (stage, name)


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_holds_at_most_twelve_modules(stage: str) -> None:
    folder = PACKAGE / "jobs" / stage
    assert len([p for p in folder.glob("*.py") if p.name != "__init__.py"]) <= 12
