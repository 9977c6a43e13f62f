"""The plugin's FastAPI app, mounted by the api-server at ``/message-batches``.

Routes (every one authenticated as the core API is, and filtered by the user's DAG access):

* ``GET /`` the page: jobs in flight, evaluations over time (``dag_id=``, ``nights=``);
* ``GET /run?dag_id=&run_id=`` every job of one run, fetched or not, and its reports;
* ``GET /report?dag_id=&run_id=&task_id=[&map_index=]`` an evaluation's ``report.html``;
* ``GET /api/jobs`` and ``GET /api/evaluations``: the same figures as JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from airflow.api_fastapi.core_api.security import get_user
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from airflow_batches.ui._access import Access
from airflow_batches.ui._board import Board, Scope
from airflow_batches.ui._evaluations import evaluation_json
from airflow_batches.ui._html import CSP
from airflow_batches.ui._jobs import job_json
from airflow_batches.ui._pages import home_page, problem_page, run_page
from airflow_batches.ui._records import EVAL_FILES_KEY, EVALUATE_MARK, RETURN_VALUE, marked_tasks
from airflow_batches.ui._report import REPORT_HEADERS, ReportMissing, report_location, stream
from airflow_batches.ui._urls import root_path

__all__ = ["create_app"]

UserDep = Annotated[Any, Depends(get_user)]
"""The user as the core API's routes take it (Airflow's ``get_user``, the same on 3.1-3.3)."""

_PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "private, no-store",
}


def _root() -> str:
    from airflow.configuration import conf

    return root_path(conf.get("api", "base_url", fallback=""))


def _session() -> Any:
    from airflow.utils.session import create_session

    return create_session()


def create_app(
    board: Board | None = None,
    *,
    access_for: Callable[[Any], Access] = Access,
    session: Callable[[], Any] = _session,
    root: Callable[[], str] = _root,
) -> FastAPI:
    """The app; the arguments replace its parts in tests (the data, the auth manager, the
    database session, the base path)."""
    board = board or Board()
    app = FastAPI(title="Message Batches", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(HTTPException)
    async def refused(request: Request, exc: HTTPException) -> Response:
        if request.url.path.rstrip("/").endswith(("/api/jobs", "/api/evaluations")):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        message = {
            401: "Sign in to Airflow to see the Message Batches page.",
            403: "Your Airflow session is not valid any more: sign in again.",
        }.get(exc.status_code, str(exc.detail))
        return HTMLResponse(
            problem_page(exc.status_code, message, root()),
            status_code=exc.status_code,
            headers=_PAGE_HEADERS,
        )

    def page(html: str) -> HTMLResponse:
        return HTMLResponse(html, headers=_PAGE_HEADERS)

    @app.get("/", response_class=HTMLResponse)
    def home(
        user: UserDep,
        dag_id: Annotated[str | None, Query(max_length=250)] = None,
        nights: Annotated[int, Query(ge=1, le=90)] = 14,
    ) -> HTMLResponse:
        access = access_for(user)
        scope = Scope(dag_id=dag_id or None)
        with session() as db:
            jobs = board.jobs(access, db, scope)
            evaluations = board.evaluations(access, db, scope, nights=nights)
        return page(home_page(access.name, jobs, evaluations, board.now(), root(), dag_id=dag_id))

    @app.get("/run", response_class=HTMLResponse)
    def run(
        user: UserDep,
        dag_id: Annotated[str, Query(max_length=250)],
        run_id: Annotated[str, Query(max_length=250)],
        job: Annotated[str | None, Query(max_length=64)] = None,
    ) -> HTMLResponse:
        access = access_for(user)
        scope = Scope(dag_id=dag_id, run_id=run_id)
        with session() as db:
            jobs = board.jobs(access, db, scope, include_fetched=True)
            evaluations = board.evaluations(access, db, scope, nights=1)
        return page(
            run_page(
                access.name, dag_id, run_id, jobs, evaluations, board.now(), root(), marked=job
            )
        )

    @app.get("/report")
    def report(
        user: UserDep,
        dag_id: Annotated[str, Query(max_length=250)],
        run_id: Annotated[str, Query(max_length=250)],
        task_id: Annotated[str, Query(max_length=250)],
        map_index: Annotated[int, Query(ge=-1)] = -1,
    ) -> Response:
        access = access_for(user)
        with session() as db:
            readable = access.may_read_records(access.dags() & {dag_id})
            found = [
                r
                for r in marked_tasks(
                    db,
                    EVALUATE_MARK,
                    dag_ids=readable,
                    run=(dag_id, run_id),
                    values=[RETURN_VALUE, EVAL_FILES_KEY],
                )
                if r.task_id == task_id and r.map_index == map_index
            ]
        if not found:
            # The same answer whether the DAG is unreadable or there is no such evaluation.
            raise HTTPException(404, "No evaluation report there that you may read.")
        try:
            uri, conn_id = report_location(found[0])
            chunks = stream(uri, conn_id)
        except ReportMissing as exc:
            raise HTTPException(404, str(exc)) from None
        except FileNotFoundError:
            raise HTTPException(404, "The report's file is not there any more.") from None
        except (OSError, ValueError) as exc:
            raise HTTPException(502, f"The report cannot be read: {type(exc).__name__}") from None
        return StreamingResponse(
            chunks, media_type="text/html; charset=utf-8", headers=REPORT_HEADERS
        )

    @app.get("/api/jobs")
    def jobs_json(
        user: UserDep,
        dag_id: Annotated[str | None, Query(max_length=250)] = None,
        run_id: Annotated[str | None, Query(max_length=250)] = None,
    ) -> dict[str, Any]:
        access = access_for(user)
        scope = Scope(dag_id=dag_id or None, run_id=run_id or None)
        with session() as db:
            jobs = board.jobs(access, db, scope, include_fetched=scope.run is not None)
        now = board.now()
        return {"now": now.isoformat(), "jobs": [job_json(j, now) for j in jobs]}

    @app.get("/api/evaluations")
    def evaluations_json(
        user: UserDep,
        dag_id: Annotated[str | None, Query(max_length=250)] = None,
        nights: Annotated[int, Query(ge=1, le=90)] = 14,
    ) -> dict[str, Any]:
        access = access_for(user)
        with session() as db:
            found = board.evaluations(access, db, Scope(dag_id=dag_id or None), nights=nights)
        return {
            "now": board.now().isoformat(),
            "evaluations": [evaluation_json(e) for e in found],
        }

    return app
