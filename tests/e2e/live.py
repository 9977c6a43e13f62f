"""A real, live Airflow stack for end-to-end tests.

``airflow dags test`` runs triggers inline, in the same process as the task, so it cannot show
that a deferrable operator really hands its work to a triggerer (for instance that the trigger
class is importable there). This module starts the actual components -- api-server, scheduler
(LocalExecutor), dag-processor and triggerer -- as subprocesses on SQLite in a throw-away
``AIRFLOW_HOME``, and observes runs from the outside through the public REST API and the log
files. It imports nothing from Airflow itself, so using it costs the test process nothing.

Typical use (see ``tests/e2e/conftest.py`` for the pytest fixture)::

    with live_airflow(dags_folder, env={"AIRFLOW_CONN_MY_API": "http://127.0.0.1:1234"}) as af:
        run_id = af.trigger("my_dag", conf={"x": 1})
        af.wait_for_run("my_dag", run_id)
        af.assert_deferred_to_triggerer("my_dag", run_id, "my_sensor")

Connections and variables are best passed as ``AIRFLOW_CONN_*`` / ``AIRFLOW_VAR_*`` in ``env``:
every component sees them from the first moment, and nothing is written to the database.

The harness is written for Linux (it reads ``/proc`` to find every process a component spawned);
elsewhere it still works but can only vouch for the processes it started directly.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from scripts.processes import (
    ProcessId,
    alive,
    free_port,
    is_alive,
    kill_family,
    process_family,
    spawn,
    stop,
)
from tests.airflow_release import HAS_STATE_AUDIT_LOG
from tests.e2e.logs import indent, log_events, render_log, tail

__all__ = [
    "ALL_COMPONENTS",
    "KEEP_HOME_ENV",
    "ApiError",
    "ComponentSpec",
    "LiveAirflow",
    "LiveAirflowError",
    "ProcessId",
    "alive",
    "is_alive",
    "live_airflow",
    "render_log",
]

ALL_COMPONENTS: tuple[str, ...] = ("api-server", "scheduler", "dag-processor", "triggerer")
RUN_TERMINAL_STATES = frozenset({"success", "failed"})
TI_TERMINAL_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})

# Set this to keep the temporary AIRFLOW_HOME (database, task and component logs) after stop().
KEEP_HOME_ENV = "LIVE_AIRFLOW_KEEP_HOME"

_HEALTH_KEYS = {
    "scheduler": "scheduler",
    "triggerer": "triggerer",
    "dag-processor": "dag_processor",
}
# The triggerer logs this (into the task's ``*.log.trigger.*.log`` file) right before it starts
# running a trigger; nothing but a triggerer process writes it.
_TRIGGER_START = re.compile(r"^trigger .+ \(ID \d+\) starting$")
_ON_KILL_INVOKED = "Trigger cancelled by user action, invoking on_kill"
_TRIGGER_END = "trigger completed"
# What the execution API logs for each state a worker reports (Airflow 3.1 has no audit rows).
_STATE_LOGGED = re.compile(
    r"\] (?P<event>Task started|Task instance state updated)\s+"
    r"\[airflow\.api_fastapi\.execution_api\.routes\.task_instances\](?P<fields>.*)$"
)


def _logged_at(line: str) -> datetime:
    """The time a component log line starts with (``2026-12-03T10:13:54.302187Z [info] ...``)."""
    return datetime.fromisoformat(line.split(" ", 1)[0])


class LiveAirflowError(RuntimeError):
    """The live stack failed or a run did not behave; the message carries the diagnostics."""


class ApiError(LiveAirflowError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ComponentSpec:
    """One process of the stack: ``airflow <args>``, with ``env`` on top of the stack's.

    ``kind`` is what it is (``"triggerer"``) when ``name`` tells several apart
    (``"triggerer-2"``); ``home`` is its own ``AIRFLOW_HOME`` (default: the stack's).
    """

    name: str
    args: tuple[str, ...]
    kind: str = ""
    env: Mapping[str, str] = field(default_factory=dict)
    home: Path | None = None


@dataclass
class _Component:
    spec: ComponentSpec
    popen: subprocess.Popen[bytes]
    log_path: Path


class LiveAirflow:
    """One live Airflow stack. Use as a context manager, or call :meth:`start` and :meth:`stop`.

    :param dags_folder: the DAGs folder the dag-processor parses and the workers run from.
    :param env: extra environment for every component, applied last (so it may override the
        harness's own settings), e.g. ``AIRFLOW_CONN_*``, ``AIRFLOW_VAR_*`` or ``AIRFLOW__X__Y``.
        Any ``AIRFLOW*`` variable of the calling process is *not* inherited.
    :param components: which components to run; the api-server is mandatory because workers
        talk to Airflow only through its execution API.
    :param pythonpath: folders put in front of ``PYTHONPATH`` for every component. Leave it empty
        when a test must prove that a trigger is importable from the *installed* package.
    :param parallelism: ``[core] parallelism``; LocalExecutor starts this many worker processes.
    :param startup_timeout: seconds to wait for every component to report healthy.
    :param users: named log-ins of the simple auth manager, user name to role (``admin``,
        ``op``, ``user``, ``viewer``), each with a password of its own (:attr:`passwords`):
        :meth:`api` calls as the first, ``api(..., as_user=name)`` as any (:meth:`token`).
        None (default): every caller is an anonymous admin, as on a developer's own stack.

    Subclasses run other stacks (``tests/e2e/distributed.py``) by overriding
    :meth:`component_specs`, :meth:`_stack_env` and :meth:`_not_ready`.
    """

    home_prefix = "airflow-batches-live-"

    def __init__(
        self,
        dags_folder: Path | str,
        *,
        env: Mapping[str, str] | None = None,
        components: Sequence[str] = ALL_COMPONENTS,
        pythonpath: Sequence[Path | str] = (),
        parallelism: int = 4,
        startup_timeout: float = 120.0,
        users: Mapping[str, str] | None = None,
    ) -> None:
        unknown = set(components) - set(ALL_COMPONENTS)
        if unknown:
            raise ValueError(f"unknown components {sorted(unknown)}; choose from {ALL_COMPONENTS}")
        if "api-server" not in components:
            raise ValueError("the api-server is required: workers reach Airflow only through it")
        self.dags_folder = Path(dags_folder).resolve()
        if not self.dags_folder.is_dir():
            raise ValueError(f"DAGs folder {self.dags_folder} does not exist")
        self.components = tuple(components)
        self.airflow_bin = Path(sys.executable).parent / "airflow"
        self.home = Path(tempfile.mkdtemp(prefix=self.home_prefix))
        self.port = 0
        self.startup_seconds: float | None = None
        self.seen_processes: set[ProcessId] = set()
        self._extra_env = dict(env or {})
        self._pythonpath = [str(Path(p).resolve()) for p in pythonpath]
        self._parallelism = parallelism
        self._startup_timeout = startup_timeout
        self._procs: dict[str, _Component] = {}
        # Components stopped or killed on purpose: not a failure of the stack.
        self._down: set[str] = set()
        self._env: dict[str, str] = {}
        self._started = False
        self._stopped = False
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._token: str | None = None
        self._users = dict(users or {})
        self.passwords = {user: secrets.token_urlsafe(16) for user in self._users}
        self._tokens: dict[str, str] = {}

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> LiveAirflow:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.home / "airflow.db"

    @property
    def component_names(self) -> list[str]:
        """The components started so far, in start order."""
        return list(self._procs)

    @property
    def env(self) -> dict[str, str]:
        """The environment every component runs with (e.g. for :meth:`cli`)."""
        return dict(self._env)

    def start(self) -> LiveAirflow:
        if self._started:
            raise LiveAirflowError("a LiveAirflow instance can only be started once")
        self._started = True
        began = time.monotonic()
        try:
            if not self.airflow_bin.exists():
                raise LiveAirflowError(
                    f"no airflow executable next to the interpreter: {self.airflow_bin}"
                )
            self.port = free_port()
            self._env = self._build_env()
            self.cli("db", "migrate", timeout=180)
            for spec in self.component_specs():
                self._spawn(spec)
            self._wait_healthy(began + self._startup_timeout)
            self._log_in()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self, *, grace: float = 10.0) -> None:
        """Stop every component and everything it spawned; idempotent.

        SIGTERM goes to each component's process group first so they shut down their workers
        cleanly; whatever is still alive after ``grace`` seconds is SIGKILLed.
        """
        if self._stopped:
            return
        self._stopped = True
        self._observe_processes()
        self.seen_processes |= stop(
            [c.popen for c in self._procs.values()], grace=grace, family=self.seen_processes
        )
        if not os.environ.get(KEEP_HOME_ENV):
            shutil.rmtree(self.home, ignore_errors=True)

    def leftover_processes(self) -> set[ProcessId]:
        """Processes of this stack that are still running (empty after a clean :meth:`stop`)."""
        return alive(self.seen_processes)

    def component_specs(self) -> list[ComponentSpec]:
        """The processes this stack runs, in start order."""
        args = {
            "api-server": ("api-server", "--host", "127.0.0.1", "--port", str(self.port)),
            # Logs are read from local files, so nothing needs the log-serving side ports.
            "scheduler": ("scheduler", "--skip-serve-logs"),
            "triggerer": ("triggerer", "--skip-serve-logs"),
            "dag-processor": ("dag-processor",),
        }
        return [ComponentSpec(name, args[name], kind=name) for name in self.components]

    def _stack_env(self) -> dict[str, str]:
        """The executor and database settings: LocalExecutor on SQLite."""
        return {
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.db_path}",
        }

    def _build_env(self) -> dict[str, str]:
        # Inherit nothing Airflow-specific: the test session's own AIRFLOW_HOME, a developer's
        # connections or config would otherwise leak into the stack.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW"))}
        api_url = self.base_url
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__PARALLELISM": str(self._parallelism),
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                # Lets the REST calls below through without a login.
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": api_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
                # Every component signs or checks the same JWTs; the default is per process.
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                # Notice DAG files a test writes after start-up (the default is 5 minutes).
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
                "PYTHONUNBUFFERED": "1",
                # Parsing the DAGs folder must not drop __pycache__ into the source tree.
                "PYTHONDONTWRITEBYTECODE": "1",
                **self._stack_env(),
            }
        )
        # A CI proxy must not intercept the workers' calls to the local execution API.
        for key in ("NO_PROXY", "no_proxy"):
            env[key] = ",".join(filter(None, [env.get(key, ""), "127.0.0.1", "localhost"]))
        if self._pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(
                [*self._pythonpath, *filter(None, [env.get("PYTHONPATH")])]
            )
        if self._users:
            # The api-server keeps the passwords it finds and makes up only the missing ones.
            passwords = self.home / "simple_auth_manager_passwords.json.generated"
            passwords.write_text(json.dumps(self.passwords))
            env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] = "False"
            env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = ",".join(
                f"{user}:{role}" for user, role in self._users.items()
            )
        env.update(self._extra_env)
        return env

    def _spawn(self, spec: ComponentSpec) -> None:
        home = spec.home or self.home
        home.mkdir(parents=True, exist_ok=True)
        env = {**self._env, **spec.env, "AIRFLOW_HOME": str(home)}
        log_path = self.home / "components" / f"{spec.name}.log"
        popen = spawn([str(self.airflow_bin), *spec.args], log_path=log_path, env=env, cwd=home)
        self._procs[spec.name] = _Component(spec, popen, log_path)
        self._down.discard(spec.name)

    def _observe_processes(self) -> None:
        if self._procs:
            self.seen_processes |= process_family(c.popen.pid for c in self._procs.values())

    def _component(self, name: str) -> _Component:
        comp = self._procs.get(name)
        if comp is None:
            raise ValueError(f"no component {name!r}; the stack runs {sorted(self._procs)}")
        return comp

    def kill_component(self, name: str) -> set[ProcessId]:
        """SIGKILL a component and every process of its at once, as if its machine died.

        Returns the processes killed. Start it again with :meth:`start_component`.
        """
        comp = self._component(name)
        self._down.add(name)
        killed = kill_family(comp.popen)
        self.seen_processes |= killed
        return killed

    def stop_component(self, name: str, *, grace: float = 30.0) -> None:
        """Shut a component down as a deployment would (SIGTERM, then SIGKILL after ``grace``)."""
        comp = self._component(name)
        self._down.add(name)
        # Only this component's processes: the rest of the stack keeps running.
        self.seen_processes |= stop([comp.popen], grace=grace)

    def start_component(self, name: str) -> None:
        """Start a stopped or killed component again, with the same name and settings."""
        comp = self._component(name)
        if comp.popen.poll() is None:
            raise LiveAirflowError(f"{name} is still running (pid {comp.popen.pid})")
        self._spawn(comp.spec)

    def restart_component(self, name: str, *, grace: float = 30.0) -> None:
        self.stop_component(name, grace=grace)
        self.start_component(name)

    def check_components(self) -> None:
        """Raise with the component's log if any component has exited (unless on purpose)."""
        self._observe_processes()
        for name, comp in self._procs.items():
            code = comp.popen.poll()
            if code is not None and name not in self._down:
                raise LiveAirflowError(
                    f"Airflow {name} exited with code {code}.\n"
                    f"--- {name} log (tail) ---\n{tail(self.component_log(name), 60)}"
                )

    def _not_ready(self) -> str | None:
        """Why the stack is not ready yet, or None once every component reports healthy."""
        wanted = ["metadatabase", *(_HEALTH_KEYS[c] for c in self.components if c in _HEALTH_KEYS)]
        try:
            health = self.api("GET", "monitor/health", timeout=5)
        except (OSError, LiveAirflowError, ValueError) as exc:
            return f"/monitor/health: {exc}"
        if isinstance(health, dict) and all(
            (health.get(key) or {}).get("status") == "healthy" for key in wanted
        ):
            return None
        return f"waiting for {wanted}; last /monitor/health: {health}"

    def _wait_healthy(self, deadline: float) -> None:
        while True:
            self.check_components()
            reason = self._not_ready()
            if reason is None:
                return
            if time.monotonic() > deadline:
                raise LiveAirflowError(
                    f"Airflow stack not ready within {self._startup_timeout:.0f}s ({reason})\n"
                    + self.component_logs_tail()
                )
            time.sleep(0.5)

    # ------------------------------------------------------------------ access

    def api(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, Any] | None = None,
        timeout: float = 30.0,
        as_user: str | None = None,
    ) -> Any:
        """Call the public REST API (``/api/v2/<path>``) and return the decoded JSON
        (``as_user``: logged in as one of the stack's ``users``)."""
        token = self._token if as_user is None else self.token(as_user)
        url = f"{self.base_url}/api/v2/{path.lstrip('/')}"
        if query:
            url += "?" + urllib.parse.urlencode(query, doseq=True)
        request = urllib.request.Request(
            url,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                **({"Authorization": f"Bearer {token}"} if token else {}),
            },
        )
        try:
            with self._opener.open(request, timeout=timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise ApiError(
                exc.code, f"{method} {url} -> HTTP {exc.code}: {detail[:2000]}"
            ) from None
        return json.loads(raw) if raw else None

    def _log_in(self) -> None:
        if self._users:
            self._token = self.token(next(iter(self._users)))
            return
        # With all users admins, the simple auth manager hands out a token for no credentials.
        # Airflow 3.3 also lets token-less REST calls through; 3.1 and 3.2 need the token.
        request = urllib.request.Request(f"{self.base_url}/auth/token", method="GET")
        with self._opener.open(request, timeout=30) as response:
            self._token = json.loads(response.read())["access_token"]

    def token(self, user: str) -> str:
        """A JWT of one of the stack's ``users``, from the auth manager's token endpoint (as
        its login page gets one), once."""
        if user not in self._tokens:
            body = json.dumps({"username": user, "password": self.passwords[user]}).encode()
            request = urllib.request.Request(
                f"{self.base_url}/auth/token",
                data=body,
                method="POST",
                headers={"Content-Type": "application/json"},
            )
            with self._opener.open(request, timeout=30) as response:
                self._tokens[user] = json.loads(response.read())["access_token"]
        return self._tokens[user]

    def _paged(self, path: str, key: str, query: Mapping[str, Any]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while True:
            page = self.api("GET", path, query={**query, "limit": 100, "offset": len(items)})
            batch = page[key]
            items.extend(batch)
            if not batch or len(items) >= page.get("total_entries", 0):
                return items

    def cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run ``airflow <args>`` against this stack; raises with the output if it fails.

        Each call pays Airflow's import time (2-3 s); prefer the REST helpers in tight loops.
        """
        try:
            done = subprocess.run(
                [str(self.airflow_bin), *args],
                env=self._env,
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise LiveAirflowError(
                f"`airflow {' '.join(args)}` timed out after {timeout}s"
            ) from exc
        if done.returncode != 0:
            raise LiveAirflowError(
                f"`airflow {' '.join(args)}` exited with {done.returncode}\n"
                f"--- stdout ---\n{tail(done.stdout, 40)}\n"
                f"--- stderr ---\n{tail(done.stderr, 40)}"
            )
        return done

    def set_connection(self, conn_id: str, uri_or_json: str) -> None:
        """Store a connection in the stack's database (a URI, or Airflow's connection JSON).

        Prefer ``AIRFLOW_CONN_<ID>`` in ``env`` when the value is known before start.
        """
        flag = "--conn-json" if uri_or_json.lstrip().startswith("{") else "--conn-uri"
        with contextlib.suppress(LiveAirflowError):
            self.cli("connections", "delete", conn_id)
        self.cli("connections", "add", conn_id, flag, uri_or_json)

    # ------------------------------------------------------------------ runs

    def wait_for_dag(self, dag_id: str, *, timeout: float = 60.0) -> None:
        """Wait until the dag-processor has parsed ``dag_id`` (raises with import errors)."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_components()
            try:
                self.api("GET", f"dags/{_q(dag_id)}")
                return
            except ApiError as exc:
                if exc.status != 404:
                    raise
            if time.monotonic() > deadline:
                errors: Any
                try:
                    errors = self.api("GET", "importErrors").get("import_errors")
                except (OSError, LiveAirflowError) as exc:
                    errors = f"<could not read: {exc}>"
                raise LiveAirflowError(
                    f"DAG {dag_id!r} not parsed from {self.dags_folder} within {timeout:.0f}s.\n"
                    f"Import errors: {json.dumps(errors, indent=2)}\n"
                    f"--- dag-processor log (tail) ---\n"
                    f"{tail(self.component_log('dag-processor'), 40)}"
                )
            time.sleep(0.5)

    def trigger(
        self,
        dag_id: str,
        conf: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        parse_timeout: float = 60.0,
    ) -> str:
        """Unpause ``dag_id`` and start a manual run; returns its run id."""
        self.wait_for_dag(dag_id, timeout=parse_timeout)
        self.api("PATCH", f"dags/{_q(dag_id)}", {"is_paused": False})
        body: dict[str, Any] = {"logical_date": None, "conf": dict(conf or {})}
        if run_id is not None:
            body["dag_run_id"] = run_id
        return str(self.api("POST", f"dags/{_q(dag_id)}/dagRuns", body)["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.api("GET", f"dags/{_q(dag_id)}/dagRuns/{_q(run_id)}")["state"])

    def wait_for_run(
        self,
        dag_id: str,
        run_id: str,
        *,
        timeout: float = 120.0,
        expected_state: str | None = "success",
    ) -> str:
        """Wait for the run to finish and return its state.

        Raises :class:`LiveAirflowError` with task states and log tails if it does not finish in
        time, or finishes in a state other than ``expected_state`` (``None`` accepts any).
        """
        deadline = time.monotonic() + timeout
        while True:
            self.check_components()
            state = self.run_state(dag_id, run_id)
            if state in RUN_TERMINAL_STATES:
                break
            if time.monotonic() > deadline:
                raise LiveAirflowError(
                    f"DAG run {dag_id}/{run_id} still {state!r} after {timeout:.0f}s.\n"
                    + self.diagnostics(dag_id, run_id)
                )
            time.sleep(0.5)
        if expected_state is not None and state != expected_state:
            raise LiveAirflowError(
                f"DAG run {dag_id}/{run_id} ended {state!r}, expected {expected_state!r}.\n"
                + self.diagnostics(dag_id, run_id)
            )
        return state

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The run's task instances as the REST API returns them."""
        return self._paged(
            f"dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances", "task_instances", {}
        )

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """``{task_id: state}``; mapped instances are keyed ``"task_id[map_index]"``."""
        return {
            ti["task_id"] if ti["map_index"] < 0 else f"{ti['task_id']}[{ti['map_index']}]": ti[
                "state"
            ]
            for ti in self.task_instances(dag_id, run_id)
        }

    def task_instance(
        self, dag_id: str, run_id: str, task_id: str, *, map_index: int = -1
    ) -> dict[str, Any]:
        path = f"dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances/{_q(task_id)}"
        if map_index >= 0:
            path += f"/{map_index}"
        return dict(self.api("GET", path))

    def wait_for_task_state(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        states: str | Iterable[str],
        *,
        map_index: int = -1,
        timeout: float = 60.0,
    ) -> str:
        """Wait until the task instance is in one of ``states``; returns the state reached."""
        wanted = {states} if isinstance(states, str) else set(states)
        deadline = time.monotonic() + timeout
        while True:
            self.check_components()
            state = self.task_instance(dag_id, run_id, task_id, map_index=map_index)["state"]
            if state in wanted:
                return str(state)
            if state in TI_TERMINAL_STATES or time.monotonic() > deadline:
                raise LiveAirflowError(
                    f"Task {dag_id}/{run_id}/{task_id} is {state!r}, waited for {sorted(wanted)}"
                    f" ({timeout:.0f}s at most).\n" + self.diagnostics(dag_id, run_id)
                )
            time.sleep(0.3)

    def set_task_state(
        self, dag_id: str, run_id: str, task_id: str, state: str, *, map_index: int = -1
    ) -> None:
        """Mark a task instance ``success``, ``failed`` or ``skipped``, as a user in the UI would.

        Marking a *deferred* task makes the triggerer cancel its trigger as a user action, which
        calls the trigger's ``on_kill()``.
        """
        path = f"dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances/{_q(task_id)}"
        if map_index >= 0:
            path += f"/{map_index}"
        self.api("PATCH", path, {"new_state": state})

    def clear_task(self, dag_id: str, run_id: str, task_id: str) -> None:
        """Clear a task instance so it runs again; a deferred task's trigger is killed too."""
        self.api(
            "POST",
            f"dags/{_q(dag_id)}/clearTaskInstances",
            {
                "dag_run_id": run_id,
                "task_ids": [task_id],
                "dry_run": False,
                "only_failed": False,
                "reset_dag_runs": True,
            },
        )

    # ------------------------------------------------------------------ deferral evidence

    def task_events(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        *,
        try_number: int | None = None,
        map_index: int = -1,
    ) -> list[str]:
        """The audit-log events of one task instance, oldest first.

        The execution API writes one row per state the worker reports (``running``,
        ``deferred``, ``success``, ``failed`` ...); user actions add rows of their own.
        Airflow 3.1 writes no such rows: there the states come from the api-server's log.
        """
        if not HAS_STATE_AUDIT_LOG:
            return self._logged_states(dag_id, run_id, task_id, try_number, map_index)
        query: dict[str, Any] = {
            "dag_id": dag_id,
            "run_id": run_id,
            "task_id": task_id,
            "map_index": map_index,
            "order_by": "id",
        }
        if try_number is not None:
            query["try_number"] = try_number
        return [str(row["event"]) for row in self._paged("eventLogs", "event_logs", query)]

    def _logged_states(
        self, dag_id: str, run_id: str, task_id: str, try_number: int | None, map_index: int
    ) -> list[str]:
        ti = self.task_instance(dag_id, run_id, task_id, map_index=map_index)
        if try_number not in (None, ti["try_number"]):
            raise LiveAirflowError(
                f"Airflow 3.1 logs the states of the latest try only (try {ti['try_number']})"
            )
        # A try that fails while not running (the deferral race's "state mismatch") keeps its
        # id into the next try on 3.1, so the lines of a later try are the ones logged after its
        # start; the start stays that of its first run when it resumes from a deferral.
        since = None
        if ti["try_number"] > 1 and ti.get("start_date"):
            since = datetime.fromisoformat(ti["start_date"])
        states = []
        for line in self.component_log("api-server").splitlines():
            found = _STATE_LOGGED.search(line)
            if not found or f"ti_id={ti['id']}" not in found["fields"].split():
                continue
            if since is not None and _logged_at(line) < since:
                continue
            new_state = re.search(r"\bnew_state=(\S+)", found["fields"])
            if found["event"] == "Task started":
                states.append("running")
            elif new_state:
                states.append(new_state[1])
        return states

    def was_deferred(
        self, dag_id: str, run_id: str, task_id: str, *, try_number: int | None = None
    ) -> bool:
        """True if the task's worker reported the ``deferred`` state (recorded server-side)."""
        return "deferred" in self.task_events(dag_id, run_id, task_id, try_number=try_number)

    def was_resumed(
        self, dag_id: str, run_id: str, task_id: str, *, try_number: int | None = None
    ) -> bool:
        """True if a worker picked the task up again after it had deferred."""
        events = self.task_events(dag_id, run_id, task_id, try_number=try_number)
        return "deferred" in events and "running" in events[events.index("deferred") + 1 :]

    def trigger_ran(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> bool:
        """True if a triggerer process started running the task's trigger."""
        text = self.trigger_log(dag_id, run_id, task_id, try_number, raw=True)
        return any(_TRIGGER_START.match(event) for event in log_events(text))

    def on_kill_invoked(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> bool:
        """True if the triggerer cancelled the task's trigger as a user action, calling on_kill."""
        text = self.trigger_log(dag_id, run_id, task_id, try_number, raw=True)
        return _ON_KILL_INVOKED in log_events(text)

    def wait_for_trigger_start(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, *, timeout: float = 60.0
    ) -> None:
        """Wait until the triggerer is running the task's trigger.

        Do this before killing a deferred task to test ``on_kill``: a trigger the triggerer has
        not picked up yet is simply dropped, and its ``on_kill`` never runs.
        """
        self._wait_for_trigger(dag_id, run_id, task_id, try_number, "started", timeout)

    def trigger_ended(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> bool:
        """True once the triggerer stopped running the task's trigger: it fired, failed or was
        cancelled (a user killed the task, which calls ``on_kill()`` only from Airflow 3.3)."""
        text = self.trigger_log(dag_id, run_id, task_id, try_number, raw=True)
        return _TRIGGER_END in log_events(text)

    def wait_for_trigger_end(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, *, timeout: float = 60.0
    ) -> None:
        self._wait_for_trigger(dag_id, run_id, task_id, try_number, "ended", timeout)

    def _wait_for_trigger(
        self, dag_id: str, run_id: str, task_id: str, try_number: int, what: str, timeout: float
    ) -> None:
        check = self.trigger_ran if what == "started" else self.trigger_ended
        deadline = time.monotonic() + timeout
        while not check(dag_id, run_id, task_id, try_number):
            self.check_components()
            if time.monotonic() > deadline:
                raise LiveAirflowError(
                    f"The trigger of {dag_id}/{run_id}/{task_id} had not {what} in a triggerer "
                    f"within {timeout:.0f}s.\n" + self.diagnostics(dag_id, run_id)
                )
            time.sleep(0.3)

    def assert_deferred_to_triggerer(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        try_number: int = 1,
        *,
        resumed: bool = True,
    ) -> None:
        """Raise with diagnostics unless the task deferred, a real triggerer ran its trigger,
        and (if ``resumed``) a worker then picked the task up again."""
        events = self.task_events(dag_id, run_id, task_id, try_number=try_number)
        problems = []
        if "deferred" not in events:
            problems.append(f"the task never reported 'deferred' (events: {events})")
        if not self.trigger_ran(dag_id, run_id, task_id, try_number):
            problems.append("no triggerer logged starting its trigger")
        if resumed and not self.was_resumed(dag_id, run_id, task_id, try_number=try_number):
            problems.append(f"no worker resumed it after the deferral (events: {events})")
        if problems:
            raise LiveAirflowError(
                f"Task {dag_id}/{run_id}/{task_id} try {try_number}: "
                + "; ".join(problems)
                + "\n"
                + self.diagnostics(dag_id, run_id)
            )

    # ------------------------------------------------------------------ logs

    def log_folders(self) -> list[Path]:
        """Every ``[logging] base_log_folder`` of the stack (one per home)."""
        homes = {c.spec.home or self.home for c in self._procs.values()} or {self.home}
        return sorted(home / "logs" for home in homes)

    def _ti_log_dirs(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> list[Path]:
        # Follows the default [logging] log_filename_template.
        rel = Path(f"dag_id={dag_id}", f"run_id={run_id}", f"task_id={task_id}")
        if map_index >= 0:
            rel /= f"map_index={map_index}"
        return [folder / rel for folder in self.log_folders()]

    @staticmethod
    def _read_all(paths: Iterable[Path]) -> str:
        # One try's log can be in several homes: a task resumed after a deferral may run on
        # another worker than the one that deferred it. Oldest part first.
        found = sorted((p for p in paths if p.exists()), key=lambda p: p.stat().st_mtime)
        texts = [p.read_text(errors="replace") for p in found]
        return "".join(t if t.endswith("\n") else t + "\n" for t in texts if t)

    def task_log(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        try_number: int = 1,
        *,
        map_index: int = -1,
        raw: bool = False,
    ) -> str:
        """The worker-side log of one try ("" if none was written yet).

        Rendered one readable line per record unless ``raw`` (Airflow writes JSON lines).
        """
        folders = self._ti_log_dirs(dag_id, run_id, task_id, map_index)
        text = self._read_all(folder / f"attempt={try_number}.log" for folder in folders)
        return text if raw else render_log(text)

    def trigger_log(
        self,
        dag_id: str,
        run_id: str,
        task_id: str,
        try_number: int = 1,
        *,
        map_index: int = -1,
        raw: bool = False,
    ) -> str:
        """What the triggerer logged for this try's trigger(s), including the trigger's own
        log calls and the ``Trigger fired event`` line ("" if no triggerer ran it)."""
        folders = self._ti_log_dirs(dag_id, run_id, task_id, map_index)
        text = self._read_all(
            path
            for folder in folders
            for path in folder.glob(f"attempt={try_number}.log.trigger.*.log")
        )
        return text if raw else render_log(text)

    def component_log(self, name: str) -> str:
        """stdout and stderr of one component (``"api-server"``, ``"scheduler"``, ...)."""
        comp = self._procs.get(name)
        if comp is None or not comp.log_path.exists():
            return ""
        return comp.log_path.read_text(errors="replace")

    def triggerer_log(self) -> str:
        """The triggerer process's own output. Per-trigger lines go to :meth:`trigger_log`."""
        return self.component_log("triggerer")

    def component_logs_tail(self, lines: int = 30) -> str:
        def useful(line: str) -> bool:
            # The harness's own polling would otherwise fill the api-server's tail.
            return not ("request finished" in line and "method=GET path=/api/v2/" in line)

        return "\n".join(
            f"--- {name} log (tail) ---\n"
            + tail("\n".join(filter(useful, self.component_log(name).splitlines())), lines)
            for name in self._procs
        )

    def diagnostics(self, dag_id: str | None = None, run_id: str | None = None) -> str:
        """A report for failure messages: run and task states, task events, log tails."""
        parts = []
        if dag_id and run_id:
            try:
                parts.append(f"Run state: {self.run_state(dag_id, run_id)}")
                for ti in self.task_instances(dag_id, run_id):
                    task_id, try_number, index = ti["task_id"], ti["try_number"], ti["map_index"]
                    label = task_id if index < 0 else f"{task_id}[{index}]"
                    events = self.task_events(dag_id, run_id, task_id, map_index=index)
                    parts.append(
                        f"Task {label}: state={ti['state']} try={try_number} events={events}"
                    )
                    for attempt in range(1, max(try_number, 1) + 1):
                        log = self.task_log(dag_id, run_id, task_id, attempt, map_index=index)
                        trig = self.trigger_log(dag_id, run_id, task_id, attempt, map_index=index)
                        parts.append(f"  task log, try {attempt} (tail):\n{indent(tail(log, 25))}")
                        if trig:
                            parts.append(
                                f"  trigger log, try {attempt} (tail):\n{indent(tail(trig, 15))}"
                            )
            except (OSError, LiveAirflowError, KeyError, ValueError) as exc:
                parts.append(f"<could not read run details: {exc!r}>")
        parts.append(self.component_logs_tail())
        return "\n".join(parts)


RESUMED = ["running", "deferred", "running", "success"]
"""The states of a try that deferred and was resumed to success (``task_events``)."""


def assert_resumed(events: Sequence[str], context: object = None) -> None:
    """``events`` (one try's states) are those of a deferral resumed to success. Airflow's
    deferral race (docs/compatibility.md) may log its "state mismatch" and "failed" on that
    one try as well (a CI run on 3.3: running, deferred, state mismatch, failed, running,
    success, the run a success): the try must still have deferred, and ended resumed."""
    what = (context, list(events))
    if "state mismatch" in events:
        assert list(events[:2]) == RESUMED[:2] and list(events[-2:]) == RESUMED[2:], what
    else:
        assert list(events) == RESUMED, what


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="")


@contextlib.contextmanager
def live_airflow(
    dags_folder: Path | str,
    *,
    env: Mapping[str, str] | None = None,
    components: Sequence[str] = ALL_COMPONENTS,
    pythonpath: Sequence[Path | str] = (),
    parallelism: int = 4,
    startup_timeout: float = 120.0,
) -> Iterator[LiveAirflow]:
    """Run a :class:`LiveAirflow` stack for the duration of the ``with`` block."""
    stack = LiveAirflow(
        dags_folder,
        env=env,
        components=components,
        pythonpath=pythonpath,
        parallelism=parallelism,
        startup_timeout=startup_timeout,
    )
    with stack:
        yield stack
