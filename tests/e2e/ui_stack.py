"""A live stack for the Message Batches page: users who sign in, and a browser to look.

:class:`UiStack` is the live harness (``tests/e2e/live.py``) with named users and passwords
(its ``users``) instead of "every user is an admin", and an auth manager that keeps some DAGs
from some of them: the harness's own REST calls sign in as the admin; the plugin comes from
the installed package's ``airflow.plugins`` entry point. :func:`sign_in` signs a user in
through the UI's own login page in Chromium.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.devtools import Chromium, DevToolsError
from tests.e2e.live import LiveAirflow
from tests.e2e.ui_auth import HIDDEN_ENV

ROOT = Path(__file__).resolve().parents[2]


class UiStack(LiveAirflow):
    """The live stack with real users: ``users`` maps a name to its role; ``hidden`` maps a
    name to the DAGs kept from it (``tests/e2e/ui_auth.py``)."""

    def __init__(
        self,
        dags_folder: Path | str,
        *,
        users: Mapping[str, str],
        hidden: Mapping[str, Sequence[str]] | None = None,
        env: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            dags_folder,
            users={"admin": "admin", **users},
            env={
                "AIRFLOW__CORE__AUTH_MANAGER": "tests.e2e.ui_auth.DagScopedAuthManager",
                HIDDEN_ENV: json.dumps(dict(hidden or {})),
                **(env or {}),
            },
            # The auth manager above lives in the tests: the api-server imports it from here.
            pythonpath=[ROOT],
            **kwargs,
        )


def sign_in(browser: Chromium, stack: UiStack, user: str, *, timeout: float = 30.0) -> None:
    """Sign ``user`` in through the auth manager's login page, as a person would (typing into
    the form, pressing its button): the page gets a token and keeps it in the ``_token``
    cookie, which the UI and the plugin's page send to the api-server."""
    browser.call("Network.enable")
    browser.call("Network.clearBrowserCookies")
    browser.navigate(f"{stack.base_url}/auth/login")
    for name, text in (("username", user), ("password", stack.passwords[user])):
        wait_for(
            browser,
            f"(e => e && (e.focus(), document.activeElement === e))"
            f"(document.querySelector('input[name={name}]'))",
            timeout=timeout,
            what=f"the login form's {name}",
        )
        browser.call("Input.insertText", text=text)
    wait_for(
        browser,
        "(b => b && !b.disabled && (b.click(), true))"
        "(document.querySelector('button[type=submit]'))",
        timeout=timeout,
        what="the sign-in button",
    )
    deadline = time.monotonic() + timeout
    while not any(
        c["name"] == "_token"
        for c in browser.call("Network.getCookies", urls=[stack.base_url])["cookies"]
    ):
        if time.monotonic() > deadline:
            raise DevToolsError(f"no _token cookie {timeout:.0f}s after signing {user} in")
        time.sleep(0.2)


def wait_for(browser: Chromium, expression: str, *, timeout: float, what: str) -> Any:
    """Evaluate ``expression`` in the page until it is truthy; its value."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = browser.evaluate(expression)
        except DevToolsError:
            value = None  # the page is navigating
        if value:
            return value
        if time.monotonic() > deadline:
            raise DevToolsError(f"waited {timeout:.0f}s for {what}")
        time.sleep(0.2)
