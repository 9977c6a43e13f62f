"""The pieces every page is made of: the frame, figures and durations, links, escaping.

The pages are plain HTML, rendered on the server: no script runs (the responses forbid it,
``CSP``), the style is inline and the charts are inline SVG. Every text that comes from a
DAG, a run, a task or a summary is escaped; links go only to the Airflow UI (its own origin,
opened in the top window when the page sits in the UI's frame) and to the pages of batches
(new tab).
"""

from __future__ import annotations

from datetime import timedelta
from html import escape
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "CSP",
    "DASH",
    "duration",
    "external_link",
    "frame",
    "number",
    "percent",
    "top_link",
    "usd",
]

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'self'"
)
"""The pages' Content-Security-Policy: no script, no fetch, framed only by Airflow's UI."""

DASH = "&ndash;"
"""What a cell shows for a figure not known (HTML: the helpers below return markup)."""

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:16px;
color:#1d2430}
h1{font-size:21px;margin:0 0 2px}h2{font-size:17px;margin:26px 0 6px}h3{font-size:15px;
margin:18px 0 4px}.meta{color:#5a6475;margin:0 0 10px}a{color:#2459a6}
table{border-collapse:collapse;width:100%;margin:6px 0 12px;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #e2e6ee;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f4f6fa;font-weight:600;white-space:nowrap}td.num{text-align:right;
white-space:nowrap}ul.batches{list-style:none;margin:0;padding:0}ul.batches li{
white-space:nowrap}.model{color:#5a6475}.status{font-size:12px;border-radius:8px;
padding:0 6px;background:#eef1f6}.status.ended{background:#e8f5ec}.status.in_progress{
background:#fff4dd}.bad{color:#b3261e}.ok{color:#22803a}.muted{color:#5a6475}
.counts span{display:inline-block;margin-right:8px}.counts .processing{color:#a15c00}
.counts .succeeded{color:#22803a}.counts .errored,.counts .expired{color:#b3261e}
.charts{display:flex;flex-wrap:wrap;gap:10px}.chart{background:#fbfcfe;border:1px solid
#e2e6ee;border-radius:6px;max-width:100%;height:auto}.chart .grid{stroke:#e2e6ee}
.chart .tick,.chart .label,.chart .legend,.chart .value{font-size:11px;fill:#3d4656}
.chart .chart-title{font-size:13px;font-weight:600;fill:#1d2430}
.notice{background:#fdecea;padding:6px 10px;border-radius:6px}.empty{color:#5a6475}
tr.marked{background:#fffbe6}code{background:#f4f6fa;padding:1px 4px;border-radius:3px}
"""


def frame(title: str, user: str, body: str, *, heading: str | None = None) -> str:
    """A whole page."""
    who = f"Signed in as {escape(user)} · " if user else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{escape(heading or title)}</h1>"
        f'<p class="meta" id="who">{who}figures from what the operators recorded; '
        "request counts from each connection's batch listing</p>"
        f"{body}</body></html>\n"
    )


def top_link(href: str, text: str, **attrs: str) -> str:
    """A link into the Airflow UI (same origin), opened in the top window; ``class_=``
    gives it a class."""
    extra = "".join(f' {k.rstrip("_")}="{escape(v)}"' for k, v in attrs.items())
    return f'<a href="{escape(href)}" target="_top"{extra}>{escape(text)}</a>'


def external_link(href: str | None, text: str) -> str:
    """A link to a batch's page (the Console, or the emulator's admin view), in a new tab;
    the text alone when there is no address or it is not ``http(s)``."""
    if not href or urlsplit(href).scheme not in ("http", "https"):
        return escape(text)
    return f'<a href="{escape(href)}" target="_blank" rel="noopener noreferrer">{escape(text)}</a>'


def usd(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return DASH
    return f"${value:,.6f}" if abs(value) < 0.01 else f"${value:,.4f}"


def percent(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return DASH
    return f"{value * 100:.1f}%"


def number(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return DASH
    return f"{value:,}" if isinstance(value, int) else f"{value:.4g}"


def duration(span: timedelta | None) -> str:
    """``3 d 4 h``, ``2 h 05 min``, ``4 min 10 s``, ``12 s``; ``expired`` below zero."""
    if span is None:
        return DASH
    seconds = int(span.total_seconds())
    if seconds < 0:
        return "expired"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"
