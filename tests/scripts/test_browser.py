"""scripts/browser.py: what it installs when Chromium is missing, and how it runs it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from scripts import browser


def test_a_missing_browser_is_installed_from_debians_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(browser.BROWSER_ENV, str(tmp_path / "no-chromium"))
    assert browser.find_browser() is None
    assert browser.install_commands() == [
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"],
    ]
    ran: list[list[str]] = []

    def fake_apt(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        ran.append(command)
        assert kwargs["stdin"] == subprocess.DEVNULL
        assert kwargs["env"]["DEBIAN_FRONTEND"] == "noninteractive"
        if command[1] == "install":  # the package lands where the override points
            (tmp_path / "no-chromium").write_text("")
        return subprocess.CompletedProcess(command, 0, b"", b"")

    monkeypatch.setattr(browser.os, "geteuid", lambda: 0)
    monkeypatch.setattr(browser.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert browser.install(run=fake_apt, log=lambda _: None) is True
    assert ran == browser.install_commands()


def test_a_browser_found_is_not_installed_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "chromium").write_text("")
    monkeypatch.setenv(browser.BROWSER_ENV, str(tmp_path / "chromium"))

    def no_apt(*args: Any, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        raise AssertionError("apt must not run")

    assert browser.install(run=no_apt) is False


def test_every_run_is_headless_sandboxless_and_quiet() -> None:
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ):
        assert flag in browser.FLAGS


@pytest.mark.slow
def test_chromium_dumps_the_dom_of_a_page(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text(
        "<html><body><p id='x'>hello</p><script>document.title='ran'</script></body></html>"
    )
    dom = browser.dump_dom(page)
    assert '<p id="x">hello</p>' in dom and "<title>ran</title>" in dom
