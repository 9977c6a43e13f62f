"""One headless Chromium driven over its DevTools protocol: open a page, run script in it.

The browser is the one ``scripts/browser.py`` finds (and installs from Debian's packages when
missing), started with the same flags and a fresh profile of its own, plus whatever a test adds
(``--host-resolver-rules`` to give a loopback server a foreign name, say). The protocol runs
over the websocket Chromium opens on a loopback port; ``websockets`` comes with Airflow's
uvicorn. Nothing outlives the ``with`` block: the browser is closed, its process group ended
and its profile deleted.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from scripts import browser

START_TIMEOUT = 20.0
CALL_TIMEOUT = 20.0


class DevToolsError(RuntimeError):
    """The browser did not start, a command failed, or an answer did not come in time."""


class Chromium:
    """``with Chromium(*flags) as page: page.navigate(url); page.evaluate(js)``."""

    def __init__(self, *flags: str) -> None:
        self.flags = flags
        self.events: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._profile = Path(tempfile.mkdtemp(prefix="airflow-batches-devtools-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._socket: ClientConnection | None = None
        self._open = contextlib.ExitStack()

    def __enter__(self) -> Chromium:
        executable = browser.ensure_browser()
        log = (self._profile / "chromium.log").open("wb")
        try:
            self._process = subprocess.Popen(
                [
                    str(executable),
                    *browser.FLAGS,
                    f"--user-data-dir={self._profile / 'profile'}",
                    "--remote-debugging-address=127.0.0.1",
                    "--remote-debugging-port=0",
                    *self.flags,
                    "about:blank",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # its own process group: ended as one below
            )
        finally:
            log.close()
        try:
            self._socket = self._open.enter_context(
                # No keepalive pings: the browser is a local child, and on a starved CI machine
                # a pong later than 20 s closed a healthy page socket mid-test.
                connect(
                    self._page_socket(),
                    max_size=None,
                    open_timeout=START_TIMEOUT,
                    ping_interval=None,
                )
            )
            self.call("Page.enable")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _page_socket(self) -> str:
        """The websocket address of the browser's first tab, once DevTools listens."""
        announced = self._profile / "profile" / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise DevToolsError(
                    f"Chromium exited with {self._process.returncode}: {self.log()}"
                )
            lines = announced.read_text().split() if announced.is_file() else []
            if lines:
                listing = httpx.get(f"http://127.0.0.1:{lines[0]}/json/list", timeout=5).json()
                pages = [t for t in listing if t.get("type") == "page"]
                if pages:
                    return str(pages[0]["webSocketDebuggerUrl"])
            if time.monotonic() > deadline:
                raise DevToolsError(f"Chromium's DevTools did not open in {START_TIMEOUT}s")
            time.sleep(0.05)

    def log(self) -> str:
        path = self._profile / "chromium.log"
        return path.read_text(errors="replace")[-2000:] if path.is_file() else ""

    def call(self, method: str, timeout: float = CALL_TIMEOUT, **params: Any) -> dict[str, Any]:
        """Send one command; return its result. Events that arrive meanwhile are kept."""
        assert self._socket is not None
        number = next(self._ids)
        self._socket.send(json.dumps({"id": number, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = self._receive(deadline, method)
            if message.get("id") == number:
                if "error" in message:
                    raise DevToolsError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            if "method" in message:
                self.events.append(message)

    def _receive(self, deadline: float, waiting_for: str) -> dict[str, Any]:
        assert self._socket is not None
        try:
            raw = self._socket.recv(timeout=max(deadline - time.monotonic(), 0.0))
        except TimeoutError:
            raise DevToolsError(f"no answer to {waiting_for} in time") from None
        message: dict[str, Any] = json.loads(raw)
        return message

    def wait_event(self, method: str, timeout: float = CALL_TIMEOUT) -> dict[str, Any]:
        """The first event ``method`` not yet taken (waiting for it if need be)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event["method"] == method:
                    return self.events.pop(i)
            message = self._receive(deadline, method)
            if "method" in message:
                self.events.append(message)

    def navigate(self, url: str, *, tries: int = 3) -> None:
        """Open ``url`` in the tab and wait until it has loaded.

        ``net::ERR_ABORTED`` means the page's own navigation replaced ours (the sign-in page
        redirects by script once it has its token, at a moment no test can see): asked again,
        up to ``tries`` times in all. Any other error is raised at once."""
        for attempt in range(1, tries + 1):
            self.events.clear()
            answer = self.call("Page.navigate", url=url)
            error = answer.get("errorText")
            if not error:
                break
            if error != "net::ERR_ABORTED" or attempt == tries:
                raise DevToolsError(f"navigating to {url}: {error}")
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str, timeout: float = CALL_TIMEOUT) -> Any:
        """Run ``expression`` in the page (awaiting a promise); its value as JSON data."""
        answer = self.call(
            "Runtime.evaluate",
            timeout=timeout,
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
        )
        if "exceptionDetails" in answer:
            raise DevToolsError(f"the page's script failed: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def close(self) -> None:
        asked = self._socket is not None
        if asked:
            # The browser may close the socket before it answers.
            with contextlib.suppress(Exception):
                self.call("Browser.close", timeout=5)
            self._socket = None
        self._open.close()
        if self._process is not None:
            try:
                # Asked to close, it exits by itself; one that never opened DevTools is ended.
                self._process.wait(timeout=10 if asked else 0)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait(timeout=10)
            self._process = None
        shutil.rmtree(self._profile, ignore_errors=True)
