"""Inline SVG charts for the report: grouped bars and lines, no script, no external asset.

Each chart is an ``<svg>`` with a ``<title>``, labelled axes and a legend; every bar and
point carries a ``<title>`` with its figure (a tooltip in a browser) and ``data-value``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

from airflow_batches.api._format import shorten

__all__ = ["PALETTE", "bar_chart", "line_chart"]

PALETTE = ("#3b6fb6", "#d9822b", "#4f9d69", "#b5485d", "#7a5fb0", "#8c7a4b", "#3d9aa6")
_W, _H = 560, 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 28, 56


def _fmt(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value * 100:.1f}%"
    if unit == "$":
        return f"${value:.6f}" if value < 0.01 else f"${value:.4f}"
    return f"{value:.4g}"


def _scale(values: Sequence[float], unit: str) -> float:
    """The top of a scale: 100 % for rates, else a little above the largest value."""
    top = max([v for v in values if v is not None] + [0.0])
    if unit == "%":
        return 1.0
    return top * 1.15 if top > 0 else 1.0


def _frame(
    chart_id: str, title: str, series: Sequence[tuple[str, Sequence[float | None]]], unit: str
) -> tuple[list[str], float]:
    """The chart's opening, title and grid, and the top of its scale."""
    top = _scale([v for _, vs in series for v in vs if v is not None], unit)
    plot_h = _H - _TOP - _BOTTOM
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" role="img" viewBox="0 0 {_W} {_H}" '
        f'width="{_W}" height="{_H}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<text x="{_LEFT}" y="16" class="chart-title">{escape(title)}</text>',
    ]
    for i in range(5):
        y = _TOP + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_W - _RIGHT}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">'
            f"{escape(_fmt(top * i / 4, unit))}</text>"
        )
    return parts, top


def bar_chart(
    chart_id: str,
    title: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    unit: str = "",
) -> str:
    """Bars grouped by category (a model), one colour per series; a None value draws none."""
    parts, top = _frame(chart_id, title, series, unit)
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    group = plot_w / max(len(categories), 1)
    bar = group * 0.8 / max(len(series), 1)
    for c, category in enumerate(categories):
        x0 = _LEFT + c * group + group * 0.1
        for s, (name, vs) in enumerate(series):
            value = vs[c] if c < len(vs) else None
            if value is None:
                continue
            h = plot_h * min(max(value / top, 0.0), 1.0)
            x, y = x0 + s * bar, _TOP + plot_h - h
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{max(bar - 2, 1):.1f}" '
                f'height="{h:.1f}" fill="{PALETTE[s % len(PALETTE)]}" '
                f'data-series="{escape(name)}" data-category="{escape(category)}" '
                f'data-value="{value:.8g}"><title>{escape(category)}, {escape(name)}: '
                f"{escape(_fmt(value, unit))}</title></rect>"
            )
            parts.append(
                f'<text x="{x + bar / 2 - 1:.1f}" y="{y - 3:.1f}" text-anchor="middle" '
                f'class="value">{escape(_fmt(value, unit))}</text>'
            )
        parts.append(
            f'<text x="{x0 + group * 0.4:.1f}" y="{_H - _BOTTOM + 16}" text-anchor="middle" '
            f'class="label">{escape(shorten(category, 22))}</text>'
        )
    parts += _legend([name for name, _ in series])
    parts.append("</svg>")
    return "".join(parts)


def line_chart(
    chart_id: str,
    title: str,
    runs: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    unit: str = "%",
) -> str:
    """One line per series (a model) over runs (oldest first); gaps where a value is None."""
    parts, top = _frame(chart_id, title, series, unit)
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    step = plot_w / max(len(runs) - 1, 1)

    def point(i: int, value: float) -> tuple[float, float]:
        return _LEFT + i * step, _TOP + plot_h - plot_h * min(max(value / top, 0.0), 1.0)

    for s, (name, vs) in enumerate(series):
        colour = PALETTE[s % len(PALETTE)]
        points = [(i, v) for i, v in enumerate(vs) if v is not None]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in (point(i, v) for i, v in points))
            parts.append(
                f'<polyline class="line" fill="none" stroke="{colour}" stroke-width="2" '
                f'points="{path}" data-series="{escape(name)}"/>'
            )
        for i, v in points:
            x, y = point(i, v)
            parts.append(
                f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}" '
                f'data-series="{escape(name)}" data-value="{v:.8g}"><title>{escape(runs[i])}, '
                f"{escape(name)}: {escape(_fmt(v, unit))}</title></circle>"
            )
    label: Callable[[int], str] = lambda i: shorten(runs[i], 14)  # noqa: E731
    last = len(runs) - 1
    for i in sorted({0, last, last // 2}):
        anchor = "start" if i == 0 else ("end" if i == last else "middle")
        parts.append(
            f'<text x="{_LEFT + i * step:.1f}" y="{_H - _BOTTOM + 16}" text-anchor="{anchor}" '
            f'class="label">{escape(label(i))}</text>'
        )
    parts += _legend([name for name, _ in series])
    parts.append("</svg>")
    return "".join(parts)


def _legend(names: Sequence[str]) -> list[str]:
    parts = []
    x = _LEFT
    for s, name in enumerate(names):
        colour = PALETTE[s % len(PALETTE)]
        parts.append(
            f'<rect x="{x}" y="{_H - 22}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + 14}" y="{_H - 13}" class="legend">{escape(shorten(name, 28))}</text>'
        )
        x += 24 + 7 * min(len(name), 28)
    return parts
