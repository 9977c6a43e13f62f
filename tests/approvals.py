"""Answering a spend approval as a person does: through the HITL endpoints of the REST API.

The Airflow UI's *Required actions* view lists ``GET /api/v2/dags/{dag}/dagRuns/{run}/
hitlDetails`` and answers with ``PATCH .../taskInstances/{task}/{map_index}/hitlDetails``;
these helpers make the same calls, against a live api-server (``LiveAirflow.api``) or, for
``dag.test()``, against the public API app built in the test process on the same metadata DB
(:class:`InProcessApi`: the way Airflow 3.3's ``dag.test()`` names for answering a task that
waits for input, and on 3.1 and 3.2 what the inline ``HITLTrigger`` reads).
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

ApiCall = Callable[..., Any]
"""``api(method, path under /api/v2/, body=None)`` -> the decoded JSON."""


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="")


def requests_of(api: ApiCall, dag_id: str) -> list[dict[str, Any]]:
    """Every HITL request of ``dag_id``'s runs, answered or not (the UI's list)."""
    page = api("GET", f"dags/{_q(dag_id)}/dagRuns/~/hitlDetails")
    return list(page["hitl_details"])


def detail_path(detail: dict[str, Any]) -> str:
    """The REST path of one request (``.../hitlDetails`` of its task instance)."""
    ti = detail["task_instance"]
    return (
        f"dags/{_q(ti['dag_id'])}/dagRuns/{_q(ti['dag_run_id'])}/taskInstances/"
        f"{_q(ti['task_id'])}/{ti['map_index']}/hitlDetails"
    )


def answer(api: ApiCall, detail: dict[str, Any], option: str) -> dict[str, Any]:
    """Answer one request as the UI's buttons do."""
    return dict(api("PATCH", detail_path(detail), {"chosen_options": [option]}))


def _waiting(detail: dict[str, Any]) -> bool:
    """Whether the task of a request waits for its answer. On Airflow 3.3 a request is listed a
    few milliseconds before its task is ``awaiting_input``, and an answer given in between is
    kept but never resumes the task (the answer's PATCH resumes only a task awaiting input):
    under ``dag.test()``, which has no scheduler to time it out, the run would wait forever. A
    person is never that fast; this answerer is, so on 3.3 it waits for the state, as the
    UI's button is pressed once the page shows the task waiting. (3.1 and 3.2 read the answer
    from the task's trigger, whenever it came.)"""
    from airflow_batches._compat import TaskAwaitingInput

    return TaskAwaitingInput is None or detail["task_instance"].get("state") == "awaiting_input"


class Answerer:
    """A person at the UI: answers each request of ``dag_id``'s tasks as it appears, with the
    option given for its task (``None``: leaves it unanswered), and keeps what it saw.

    ``before_answer(detail)`` runs just before an answer is sent (to change the world
    between the question and the answer).
    """

    def __init__(
        self,
        api: ApiCall,
        dag_id: str | Callable[[], str | None],
        options: dict[str, str | None],
        *,
        before_answer: Callable[[dict[str, Any]], None] | None = None,
        poll: float = 0.2,
    ) -> None:
        self.api = api
        self.dag_id = dag_id
        self.options = options
        self.before_answer = before_answer
        self.poll = poll
        self.seen: list[dict[str, Any]] = []
        self.answered: list[tuple[str, str]] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="answerer")

    def __enter__(self) -> Answerer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        if self.errors:
            raise self.errors[0]

    def asked(self, task_id: str) -> list[dict[str, Any]]:
        return [d for d in self.seen if d["task_instance"]["task_id"] == task_id]

    def _run(self) -> None:
        known: set[str] = set()
        while not self._stop.is_set():
            try:
                dag_id = self.dag_id() if callable(self.dag_id) else self.dag_id
                for detail in requests_of(self.api, dag_id) if dag_id else []:
                    key = detail["task_instance"]["id"]
                    if key in known or detail["response_received"]:
                        continue
                    if not _waiting(detail):
                        continue  # asked, not yet waiting: see _waiting
                    known.add(key)
                    self.seen.append(detail)
                    task_id = detail["task_instance"]["task_id"]
                    option = self.options.get(task_id)
                    if option is None:
                        continue
                    if self.before_answer is not None:
                        self.before_answer(detail)
                    answer(self.api, detail, option)
                    self.answered.append((task_id, option))
            except BaseException as exc:  # reported by __exit__
                self.errors.append(exc)
                return
            self._stop.wait(self.poll)


@contextmanager
def _all_admins() -> Iterator[None]:
    # Set only while the app is built and called: other tests of the session check access.
    key = "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"
    old = os.environ.get(key)
    os.environ[key] = "True"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


class InProcessApi:
    """Airflow's public REST API app, built in this process on its metadata DB, called as a
    client would (a bearer token from ``/auth/token``: the simple auth manager, all admins,
    the user ``Anonymous``). :meth:`as_user` is the same API called by another user: an admin
    named ``username`` (the id the simple auth manager gives a user), without the all-admins
    mode (which lets anyone answer any request), so that Airflow checks who may answer."""

    all_admins = True

    def __init__(self) -> None:
        from airflow.api_fastapi.app import create_app
        from fastapi.testclient import TestClient

        with _all_admins():
            self.client = TestClient(create_app("core"))
            token = self.client.get("/auth/token").json()["access_token"]
        self.client.headers["Authorization"] = f"Bearer {token}"

    def as_user(self, username: str) -> InProcessApi:
        from airflow.api_fastapi.app import create_app, get_auth_manager
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
        from fastapi.testclient import TestClient

        other = object.__new__(InProcessApi)
        other.all_admins = False
        # An app of its own: one built in the all-admins mode signs every request as Anonymous.
        other.client = TestClient(create_app("core"))
        token = get_auth_manager().generate_jwt(
            SimpleAuthManagerUser(username=username, role="ADMIN")
        )
        other.client.headers["Authorization"] = f"Bearer {token}"
        return other

    def status_of(self, method: str, path: str, body: Any = None) -> tuple[int, str]:
        """The status and text of a call that may be refused."""
        with _all_admins() if self.all_admins else nullcontext():
            response = self.client.request(method, f"/api/v2/{path.lstrip('/')}", json=body)
        return response.status_code, response.text

    def __call__(self, method: str, path: str, body: Any = None) -> Any:
        status, text = self.status_of(method, path, body)
        if status >= 400:
            raise AssertionError(f"{method} {path} -> {status}: {text}")
        return json.loads(text)


def let_dag_test_read_answers() -> None:
    """Airflow 3.1 and 3.2 only: let ``dag.test()``'s inline ``HITLTrigger`` read the answer.

    Those releases run a deferred task's trigger inline under an in-process supervisor that
    does not answer the trigger's read of the HITL answer (``GetHITLDetailResponse``; only
    the triggerer answers it), so not even ``HITLOperator`` can wait for a person under
    ``dag.test()`` (docs/compatibility.md). This teaches it the triggerer's answer, through
    the same execution API call; 3.3 needs none (the task waits in ``awaiting_input`` and the
    REST API resumes it). The live-stack test proves the real triggerer on every release.
    """
    from airflow_batches._compat import TaskAwaitingInput

    if TaskAwaitingInput is not None:
        return
    from airflow.jobs.triggerer_job_runner import HITLDetailResponseResult
    from airflow.sdk.execution_time import supervisor
    from airflow.sdk.execution_time.comms import GetHITLDetailResponse

    cls = supervisor.InProcessTestSupervisor
    handle = cls._handle_request
    if getattr(handle, "reads_hitl_answers", False):
        return

    def handle_request(self: Any, msg: Any, log: Any, req_id: int) -> None:
        if isinstance(msg, GetHITLDetailResponse):
            answer = self.client.hitl.get_detail_response(ti_id=msg.ti_id)
            result = HITLDetailResponseResult.from_api_response(response=answer)
            self.send_msg(result, request_id=req_id, error=None)
            return
        handle(self, msg, log, req_id)

    handle_request.reads_hitl_answers = True  # type: ignore[attr-defined]
    cls._handle_request = handle_request  # type: ignore[method-assign]


def wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(0.2)


def option_rows(body: str) -> Sequence[str]:
    """The table rows of a request's body (one per model)."""
    return [line for line in body.splitlines() if line.startswith("| ") and "---" not in line]
