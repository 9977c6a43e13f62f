"""The ASGI application: a declarative route list, three middlewares, one error handler."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Mount

from airflow_batches.emulator import admin, routes
from airflow_batches.emulator.admin_guard import AdminGuard, HostGuard
from airflow_batches.emulator.config import EmulatorConfig
from airflow_batches.emulator.errors import (
    APIError,
    RequestIdMiddleware,
    handle_api_error,
    handle_http_exception,
    handle_unexpected,
)
from airflow_batches.emulator.fault_middleware import FaultMiddleware
from airflow_batches.emulator.service import Emulator

ADMIN_PREFIX = "/_emulator"


def create_app(config: EmulatorConfig | None = None) -> Starlette:
    """Build the emulator app; ``app.state.emulator`` is its ``Emulator``.

    Served by uvicorn, the lifespan starts and stops the workers. In process (e.g. with
    ``httpx.ASGITransport``, which sends no lifespan events) the workers start with the first
    request; call ``await app.state.emulator.stop()`` when done.
    """
    emulator = Emulator(config or EmulatorConfig())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await emulator.ensure_started()
        try:
            yield
        finally:
            await emulator.stop()

    app = Starlette(
        routes=[
            *routes.routes,
            Mount(ADMIN_PREFIX, routes=admin.routes, middleware=[Middleware(AdminGuard)]),
        ],
        middleware=[
            Middleware(RequestIdMiddleware, clock=emulator.clock.now),
            Middleware(HostGuard),
            Middleware(FaultMiddleware),
        ],
        exception_handlers={
            APIError: handle_api_error,
            HTTPException: handle_http_exception,
            Exception: handle_unexpected,
        },
        lifespan=lifespan,
    )
    app.state.emulator = emulator
    return app
