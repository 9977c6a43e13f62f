"""The public surface: every exported name resolves, and the API layer needs no Airflow."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap

import pytest

import airflow_batches
import airflow_batches.api as api
from airflow_batches.api import _errors


def test_every_name_in_api_all_resolves() -> None:
    assert len(api.__all__) == len(set(api.__all__))
    for name in api.__all__:
        assert getattr(api, name) is not None, name


def test_api_all_has_every_exception() -> None:
    exported = set(_errors.__all__)
    assert exported <= set(api.__all__)
    for name in _errors.__all__:
        obj = getattr(api, name)
        if isinstance(obj, type):
            assert issubclass(obj, api.BatchesError)


def test_no_public_name_is_missing_from_all() -> None:
    public = {
        name
        for name, value in vars(api).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith(api.__name__)
    }
    assert public <= set(api.__all__)


def test_top_level_names() -> None:
    assert airflow_batches.Client is api.Client
    assert airflow_batches.AsyncClient is api.AsyncClient
    assert "MessageBatchesHook" in airflow_batches.__all__
    assert airflow_batches.MessageBatchesHook.conn_type == "message_batches"
    assert isinstance(airflow_batches.__version__, str)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = airflow_batches.Nope


def test_every_top_level_name_resolves() -> None:
    assert len(airflow_batches.__all__) == len(set(airflow_batches.__all__))
    for name in airflow_batches.__all__:
        assert getattr(airflow_batches, name) is not None, name
    from airflow_batches.jobs.results import ResultRow
    from airflow_batches.operators._output import read_results

    assert airflow_batches.ResultRow is ResultRow
    assert airflow_batches.read_results is read_results


def test_the_api_layer_does_not_import_airflow() -> None:
    # A fresh interpreter: this test process has imported Airflow long ago.
    code = textwrap.dedent(
        """
        import sys
        import httpx
        import airflow_batches
        import airflow_batches.api
        from airflow_batches.api import Client

        def handler(request):
            return httpx.Response(200, json={"data": [], "has_more": False})

        with Client(api_key="k", transport=httpx.MockTransport(handler)) as client:
            assert list(client.list()) == []
        loaded = sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow."))
        print(",".join(loaded))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == ""


def test_the_jobs_and_evals_layers_do_not_import_airflow() -> None:
    code = textwrap.dedent(
        """
        import sys
        import airflow_batches.evals
        import airflow_batches.emulator.evalset
        import airflow_batches.jobs
        import airflow_batches.jobs.cache, airflow_batches.jobs.results
        import airflow_batches.jobs.prepare
        import airflow_batches.jobs.cost, airflow_batches.jobs.submit, airflow_batches.jobs.wait
        loaded = sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow."))
        print(",".join(loaded))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == ""


def test_the_evals_surface() -> None:
    import airflow_batches.evals as evals

    assert len(evals.__all__) == len(set(evals.__all__))
    for name in evals.__all__:
        assert getattr(evals, name) is not None, name
    assert airflow_batches.EvaluateResultsOperator.__name__ == "EvaluateResultsOperator"


@pytest.mark.parametrize("package", ["airflow_batches.jobs", "airflow_batches.jobs.wait"])
def test_every_name_of_a_lazy_package_resolves(package: str) -> None:
    lazy = importlib.import_module(package)
    assert len(lazy.__all__) == len(set(lazy.__all__))
    assert set(lazy.__all__) <= set(dir(lazy))
    for name in lazy.__all__:
        namespace: dict[str, object] = {}
        exec(f"from {package} import {name}", namespace)
        assert namespace[name] is getattr(lazy, name), name
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = lazy.Nope


def _loaded_after(code: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code) + _PRINT_LOADED],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(done.stdout.strip().split(","))


_PRINT_LOADED = """
ours = ("airflow_batches.", "httpx")
print(",".join(sorted(m for m in set(sys.modules) - before if m.startswith(ours))))
"""


def test_importing_the_trigger_loads_nothing_of_the_wait() -> None:
    # The triggerer imports a trigger's module, and builds the trigger, inside its event loop:
    # every module imported there blocks every other trigger. Airflow itself (and so pydantic)
    # is loaded already in a triggerer; the wait's own modules and httpx are not.
    code = """
        import sys
        import airflow_batches._compat
        before = set(sys.modules)
        import airflow_batches.triggers.batch as batch
        trigger = batch.BatchTrigger(batch_ids=["msgbatch_1"], conn_id="c")
        trigger.serialize()
    """
    loaded = _loaded_after(code)
    assert loaded <= {"airflow_batches.triggers", "airflow_batches.triggers.batch"}, loaded


def test_triggers_starting_together_import_the_wait_once_each_in_a_thread() -> None:
    code = """
        import asyncio, sys
        import airflow_batches._compat
        import airflow_batches.triggers.batch as batch
        before = set(sys.modules)

        async def together():
            await asyncio.gather(*(batch.load_wait() for _ in range(8)))
            from airflow_batches.jobs.wait import WaitCore, shared_poller  # loaded: no import
            trigger = batch.BatchTrigger(batch_ids=["msgbatch_1"], conn_id="c")
            assert trigger.core.pending() == ["msgbatch_1"]

        asyncio.run(together())
    """
    loaded = _loaded_after(code)
    assert {"airflow_batches.jobs.wait._core", "airflow_batches.hooks.batches"} <= loaded


def test_the_wait_is_imported_in_a_thread_and_nothing_else() -> None:
    code = """
        import asyncio, sys, threading
        import airflow_batches._compat
        import airflow_batches.triggers.batch as batch
        before = set()
        main = threading.get_ident()
        where = []
        real = batch._import_wait
        batch._import_wait = lambda: (where.append(threading.get_ident()), real())
        asyncio.run(batch.load_wait())
        asyncio.run(batch.load_wait())  # once per process
        assert len(where) == 1 and where[0] != main, where
    """
    loaded = _loaded_after(code)
    assert "airflow_batches.jobs.wait._core" in loaded
    assert "airflow_batches.jobs.wait._poller" in loaded
    jobs = {m for m in loaded if m.startswith("airflow_batches.jobs.")}
    assert jobs == {
        "airflow_batches.jobs.wait",
        "airflow_batches.jobs.wait._core",
        "airflow_batches.jobs.wait._heap",
        "airflow_batches.jobs.wait._poller",
        "airflow_batches.jobs.wait._progress",
        "airflow_batches.jobs.wait._room",
    }
    for heavy in ("api._pricing", "api._model_table", "operators", "sensors", "emulator"):
        assert not any(m.startswith(f"airflow_batches.{heavy}") for m in loaded), heavy
