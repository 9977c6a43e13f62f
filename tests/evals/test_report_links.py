"""report.html writes links only to http, https and file addresses taken from its files."""

from __future__ import annotations

import re
from typing import Any

import pytest

from airflow_batches.evals._report import render_report


def summary(**extra: Any) -> dict[str, Any]:
    return {"models": {}, "totals": {}, "lines": 0, **extra}


def hrefs(html: str) -> list[str]:
    return re.findall(r'<a href="([^"]*)"', html)


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(document.domain)",
        "JavaScript:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "java\nscript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "vbscript:msgbox(1)",
        "//evil.example/report.html",
        "../../report.html",
        "\x01https://example.com",
    ],
)
def test_an_address_of_another_kind_is_shown_as_text(url: str) -> None:
    html = render_report(
        summary(
            baseline={"run_id": "night-1", "report_url": url},
            batches=[{"id": "msgbatch_1", "model": "a", "url": url}],
            files={"report": url, "scores": url},
        )
    )
    assert hrefs(html) == []
    assert "night-1" in html and "msgbatch_1" in html and ">report<" not in html


def test_http_https_and_file_addresses_are_links() -> None:
    urls = ["https://console.example/b/1", "http://127.0.0.1:8089/x", "file:///tmp/r.html"]
    html = render_report(
        summary(
            baseline={"run_id": "night-1", "report_url": urls[2]},
            batches=[{"id": "msgbatch_1", "model": "a", "url": urls[0]}],
            files={"scores": urls[1]},
        )
    )
    assert sorted(hrefs(html)) == sorted(urls)


def test_a_batch_that_held_several_models_is_never_labelled_with_one() -> None:
    html = render_report(
        summary(batches=[{"id": "msgbatch_1", "model": None, "models": ["a", "b"], "url": None}])
    )
    assert "msgbatch_1 (mixed: a, b)" in html
