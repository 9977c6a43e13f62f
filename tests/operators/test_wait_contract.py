"""The one wait contract of BatchSensor and FetchResultsOperator (operators/_wait_mixin).

Both declare no wait setting of their own: they take the mixin's, with the same names, types
and defaults, build the same WaitSettings and defer to the same trigger. The fetch honours
every knob the sensor has (backoff, transient errors, cancel on timeout), shown by real runs
against the emulator; BaseSensorOperator's exponential_backoff and max_wait are honoured by
the sensor, and silent_fail is refused.
"""

from __future__ import annotations

import inspect
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_batches import BatchSensor, BatchTrigger, FetchResultsOperator
from airflow_batches._compat import conf
from airflow_batches.api._retry import NOT_FOUND_GRACE
from airflow_batches.emulator import ADMIN_PREFIX
from airflow_batches.emulator.testing import RunningEmulator
from airflow_batches.jobs.wait import WaitCore, WaitSettings
from airflow_batches.operators._wait_mixin import WAIT_PARAMETERS, WaitMixin
from tests.operators.conftest import DagRunner, make_requests

OPERATORS = (BatchSensor, FetchResultsOperator)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "operators.md"


def make(cls: type[WaitMixin], **kwargs: Any) -> WaitMixin:
    return cls(task_id=f"t_{cls.__name__}", job="msgbatch_a", **kwargs)


def wait_values(op: WaitMixin) -> dict[str, Any]:
    return {name: getattr(op, name) for name in WAIT_PARAMETERS}


# --- one declaration: names, types, defaults ----------------------------------------------


def test_the_wait_parameters_are_declared_once_for_both() -> None:
    declared = [
        name
        for name, p in inspect.signature(WaitMixin.__init__).parameters.items()
        if name != "self" and p.kind is p.KEYWORD_ONLY
    ]
    assert tuple(declared) == WAIT_PARAMETERS
    for cls in OPERATORS:
        assert issubclass(cls, WaitMixin)
        own = set(inspect.signature(cls.__init__).parameters)
        assert not own & set(WAIT_PARAMETERS), (
            f"{cls.__name__} redeclares {own & set(WAIT_PARAMETERS)}"
        )


def test_same_defaults_and_types_on_both() -> None:
    sensor, fetch = (make(cls) for cls in OPERATORS)
    expected = {
        "deferrable": conf.getboolean("operators", "default_deferrable", fallback=False),
        "poke_interval": 60.0,
        "max_poke_interval": 600.0,
        "backoff_factor": 1.5,
        "timeout": 26 * 3600.0,
        "cancel_on_timeout": False,
        "cancel_on_kill": True,
        "max_transient_errors": 10,
    }
    assert wait_values(sensor) == wait_values(fetch) == expected
    for op in (sensor, fetch):
        assert {n: type(v) for n, v in wait_values(op).items()} == {
            n: type(v) for n, v in expected.items()
        }


def test_given_settings_are_kept_the_same_way_on_both() -> None:
    given = {
        "deferrable": True,
        "poke_interval": timedelta(seconds=5),
        "max_poke_interval": timedelta(minutes=2),
        "backoff_factor": 2,
        "timeout": timedelta(hours=1),
        "cancel_on_timeout": True,
        "cancel_on_kill": False,
        "max_transient_errors": 3,
    }
    sensor, fetch = (make(cls, **given) for cls in OPERATORS)
    kept = {
        "deferrable": True,
        "poke_interval": 5.0,
        "max_poke_interval": 120.0,
        "backoff_factor": 2.0,
        "timeout": 3600.0,  # float seconds on both (the fetch kept a timedelta before)
        "cancel_on_timeout": True,
        "cancel_on_kill": False,
        "max_transient_errors": 3,
    }
    assert wait_values(sensor) == wait_values(fetch) == kept
    assert all(isinstance(op.timeout, float) for op in (sensor, fetch))


def test_both_build_the_same_wait_settings_and_the_same_trigger() -> None:
    given = {
        "poke_interval": 5,
        "max_poke_interval": 50,
        "backoff_factor": 3.0,
        "timeout": 100,
        "cancel_on_timeout": True,
        "cancel_on_kill": False,
        "max_transient_errors": 4,
    }
    sensor, fetch = (make(cls, **given) for cls in OPERATORS)
    for op in (sensor, fetch):
        op._clock = lambda: 1000.0
    settings = [op.wait_settings(created_at=900.0) for op in (sensor, fetch)]
    assert (
        settings[0]
        == settings[1]
        == WaitSettings(
            poke_interval=5.0,
            max_poke_interval=50.0,
            backoff_factor=3.0,
            max_transient_errors=4,
            deadline=1100.0,
            not_found_grace_until=900.0 + NOT_FOUND_GRACE,
            started_at=1000.0,
            cancel_on_timeout=True,
        )
    )
    assert sensor.wait_settings(created_at=None).not_found_grace_until is None
    kwargs = [
        op._trigger("conn", WaitCore.of(["msgbatch_a"], s)).serialize()[1]
        for op, s in zip((sensor, fetch), settings, strict=True)
    ]
    assert kwargs[0] == kwargs[1]
    assert kwargs[0]["cancel_on_kill"] is False
    assert kwargs[0]["max_transient_errors"] == 4
    assert BatchTrigger(**kwargs[0]).serialize()[1] == kwargs[0]  # serialize() is its kwargs


@pytest.mark.parametrize("cls", OPERATORS)
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("timeout", -1),
        ("poke_interval", "soon"),
        ("max_poke_interval", -5.0),
        ("max_transient_errors", -1),
    ],
)
def test_a_bad_wait_setting_fails_at_parse_time_naming_it(
    cls: type[WaitMixin], name: str, value: Any
) -> None:
    with pytest.raises(ValueError, match=name):
        make(cls, **{name: value})


def test_the_docs_table_lists_every_wait_setting_with_its_default() -> None:
    text = DOCS.read_text()
    section = text.split("\n## Waiting\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    documented = {}
    for row in rows:
        name, default = (cell.strip() for cell in row.strip("|").split("|")[:2])
        documented[name.strip("`")] = default
    assert tuple(documented) == WAIT_PARAMETERS
    units = {"s": 1.0, "h": 3600.0}
    op = make(FetchResultsOperator)
    for name, default in documented.items():
        if name == "deferrable":
            assert default == "`[operators] default_deferrable`"
            continue
        match = re.fullmatch(r"([\d.]+) (s|h)", default)
        value: Any = float(match[1]) * units[match[2]] if match else json.loads(default.lower())
        assert getattr(op, name) == value, name
    # Both operators' own tables point at it rather than repeating it.
    for heading in ("## `BatchSensor`", "## `FetchResultsOperator`"):
        own = text.split(heading, 1)[1].split("\n## ", 1)[0]
        assert "(#waiting)" in own


# --- BaseSensorOperator's own knobs on the sensor -------------------------------------------


def test_exponential_backoff_and_max_wait_are_honoured() -> None:
    assert make(BatchSensor, exponential_backoff=True).backoff_factor == 2.0
    assert make(BatchSensor, exponential_backoff=True, backoff_factor=3).backoff_factor == 3.0
    assert make(BatchSensor, exponential_backoff=False).backoff_factor == 1.5
    capped = make(BatchSensor, poke_interval=60, max_wait=timedelta(seconds=30))
    assert (capped.poke_interval, capped.max_poke_interval) == (30.0, 30.0)
    roomy = make(BatchSensor, poke_interval=5, max_wait=45)
    assert (roomy.poke_interval, roomy.max_poke_interval) == (5.0, 45.0)


def test_exponential_backoff_and_max_wait_from_default_args_reach_the_trigger() -> None:
    from airflow.sdk import DAG

    with DAG(
        "wait_contract_defaults",
        schedule=None,
        start_date=datetime(2026, 1, 1),
        default_args={"exponential_backoff": True, "max_wait": 120, "max_transient_errors": 2},
    ):
        sensor = make(BatchSensor)
        fetch = make(FetchResultsOperator)
    kwargs = sensor._trigger(
        "conn", WaitCore.of(["msgbatch_a"], sensor.wait_settings(created_at=None))
    ).serialize()[1]
    assert (kwargs["backoff_factor"], kwargs["max_poke_interval"]) == (2.0, 120.0)
    assert kwargs["max_transient_errors"] == 2
    # The fetch has neither knob: default_args leave its backoff alone, but give it the rest.
    assert (fetch.backoff_factor, fetch.max_poke_interval) == (1.5, 600.0)
    assert fetch.max_transient_errors == 2


def test_silent_fail_is_refused_saying_what_to_use() -> None:
    with pytest.raises(ValueError, match=r"silent_fail=True.*max_transient_errors"):
        make(BatchSensor, silent_fail=True)


def _held_batch(emulator: RunningEmulator) -> str:
    from airflow_batches.api import Client

    emulator.configure(paused=True)
    client = Client(api_key=emulator.api_key, base_url=emulator.base_url)
    return client.create(make_requests(1)).id


def _sensor_polls(dag_runner: DagRunner, sensor: str) -> int:
    admin = dag_runner.emulator.admin
    batch_id = _held_batch(dag_runner.emulator)
    before = admin.calls("retrieve")
    result = dag_runner.run(
        f'BatchSensor(task_id="wait", job=BATCH_ID, deferrable=False, {sensor})',
        BATCH_ID=batch_id,
    )
    assert result.states["wait"] == "failed"  # timed out: the batch never moved
    return admin.calls("retrieve") - before


def test_the_sensor_doubles_its_interval_with_exponential_backoff(dag_runner: DagRunner) -> None:
    # No growth of its own (backoff_factor=1): 0.1 s apart, 16 polls in 1.6 s; doubling from
    # 0.1 s, polls at 0, 0.1, 0.3, 0.7, 1.5 and the deadline. A slow machine polls fewer.
    polls = _sensor_polls(
        dag_runner, "poke_interval=0.1, backoff_factor=1.0, exponential_backoff=True, timeout=1.6"
    )
    assert 3 <= polls <= 7, polls


def test_the_sensor_caps_its_interval_at_max_wait(dag_runner: DagRunner) -> None:
    # Growing tenfold, the polls would be at 0, 0.1, 1.1 and the deadline (4); capped at
    # 0.1 s, about 30 in 3 s.
    polls = _sensor_polls(
        dag_runner, "poke_interval=0.1, backoff_factor=10, max_wait=0.1, timeout=3.0"
    )
    assert polls >= 8, polls


# --- the fetch honours the knobs it lacked ---------------------------------------------------

FETCH = """
@task
def hold():
    # Batches created from now on stay in progress: the fetch's follow-up will wait.
    import httpx
    httpx.patch(ADMIN + "/config", json={"paused": True}).raise_for_status()
    return httpx.get(ADMIN + "/stats").json()["endpoints"]["retrieve"]["calls"]

submit = SubmitBatchOperator(task_id="submit", requests=REQS)
wait = BatchSensor(task_id="wait", job=submit.output, poke_interval=0.05)
held = hold()
fetch = FetchResultsOperator(task_id="fetch", job=submit.output, destination=RESULTS,
    resubmit_failed=True, max_attempts=2, {fetch})
submit >> wait >> held >> fetch
"""


def run_fetch(dag_runner: DagRunner, fetch: str) -> Any:
    """Every request errors, so the fetch resends them all as a follow-up batch and waits."""
    emulator = dag_runner.emulator
    emulator.configure(result_errors={"overloaded_error": 1.0})
    return dag_runner.run(
        FETCH.replace("{fetch}", fetch),
        REQS=make_requests(4),
        ADMIN=emulator.base_url + ADMIN_PREFIX,
    )


@pytest.mark.parametrize("deferrable", [False, True])
def test_the_fetch_backs_off_and_cancels_on_timeout_as_told(
    dag_runner: DagRunner, deferrable: bool, capfd: pytest.CaptureFixture[str]
) -> None:
    result = run_fetch(
        dag_runner,
        "poke_interval=0.05, backoff_factor=10, max_poke_interval=100, timeout=2.0, "
        f"cancel_on_timeout=True, deferrable={deferrable}",
    )
    assert result.states["fetch"] == "failed"
    assert "the wait timed out before every batch ended; canceled msgbatch_" in (
        capfd.readouterr().out
    )
    follow_up = dag_runner.emulator.admin.batches()[-1]
    assert (follow_up["status"], follow_up["canceled"]) == ("ended", 4)
    # Tenfold: polls at 0, 0.05, 0.55 and the deadline (one more when deferred: the trigger
    # polls at once), and the fetch's own look at the new batch. The old fixed 1.5: 10 or more.
    polls = dag_runner.emulator.admin.calls("retrieve") - result.xcom("hold")
    assert 3 <= polls <= 7, polls
    if deferrable:
        assert "deferred" in result.events["fetch"]


def test_the_fetch_leaves_its_batches_running_on_timeout_by_default(
    dag_runner: DagRunner,
) -> None:
    result = run_fetch(dag_runner, "poke_interval=0.05, timeout=0.5, deferrable=False")
    assert result.states["fetch"] == "failed"
    assert dag_runner.emulator.admin.batches()[-1]["status"] == "in_progress"


@contextmanager
def failing_polls(emulator: RunningEmulator, count: int) -> Iterator[None]:
    """Once the follow-up batch exists and has been retrieved, the next ``count`` retrieves
    answer 500, and the batch is let go: only the wait's polls (no retries) meet them."""
    done: list[bool] = []

    def watch() -> None:
        admin = emulator.admin
        emulator.wait_until(lambda: admin.batches_created() >= 2, timeout=120)
        seen = admin.calls("retrieve")
        emulator.wait_until(lambda: admin.calls("retrieve") > seen, timeout=60)
        emulator.configure(faults={"retrieve": {"rate_500": 1.0, "max_count": count}}, paused=False)
        done.append(True)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        watcher.join(timeout=5)
    assert done == [True], "the follow-up batch was never polled"


@pytest.mark.parametrize(("tolerated", "state"), [(2, "failed"), (3, "success")])
def test_the_fetch_tolerates_max_transient_errors_polls_in_a_row(
    dag_runner: DagRunner, tolerated: int, state: str, capfd: pytest.CaptureFixture[str]
) -> None:
    with failing_polls(dag_runner.emulator, 3):
        result = run_fetch(
            dag_runner,
            f"poke_interval=0.05, max_transient_errors={tolerated}, timeout=120, deferrable=False",
        )
    assert result.states["fetch"] == state, result.states
    stats = dag_runner.emulator.admin.stats()["endpoints"]["retrieve"]
    assert stats["faults"] == {"500": 3}
    out = capfd.readouterr().out
    assert f"attempt {min(3, tolerated)} of {tolerated}" in out
    if state == "failed":
        assert "3 consecutive polls failed" in out
    else:
        assert len(result.xcom("fetch")["attempts"]) == 2
