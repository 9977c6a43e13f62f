"""The Airflow plugin the ``airflow.plugins`` entry point names.

Every Airflow process loads plugins (the scheduler, the workers, the triggerer), and only the
api-server serves the page: the class below imports nothing heavy, and the app it mounts is
built when the api-server hands it its first request (``_LazyApp``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from airflow_batches._compat import AirflowPlugin
from airflow_batches.ui._urls import MOUNT, NAV_ROUTE

__all__ = ["MessageBatchesPlugin"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class _LazyApp:
    """An ASGI app that builds the real one (``_app.create_app``) on its first request."""

    def __init__(self) -> None:
        self._app: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            from airflow_batches.ui._app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


class MessageBatchesPlugin(AirflowPlugin):
    """The Message Batches page: a FastAPI app in the api-server and an entry in the UI's
    navigation (the page in a frame of the UI, at ``/plugin/message-batches``)."""

    name = "message_batches"
    fastapi_apps = [{"app": _LazyApp(), "url_prefix": MOUNT, "name": "Message Batches"}]
    external_views = [
        {
            "name": "Message Batches",
            # Relative: the UI resolves it against its base, so a prefix in [api] base_url
            # is kept.
            "href": MOUNT.lstrip("/") + "/",
            "url_route": NAV_ROUTE,
            "destination": "nav",
        }
    ]
