"""A small line chart as inline SVG: rendered on the server, no CDN, no JavaScript."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from html import escape


def line_chart(
    times: Sequence[datetime],
    series: Sequence[tuple[str, str, Sequence[float | None], str]],
    *,
    width: int = 900,
    height: int = 220,
    title: str = "",
) -> str:
    """series: (label, colour, values, axis) with axis "left" or "right"; None values are gaps."""
    pad_l, pad_r, pad_t, pad_b = 56, 56, 24, 28
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
             f'role="img" aria-label="{escape(title)}" style="max-width:{width}px;background:#fff">']
    if not times:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#666">'
                     "No cycles recorded in this period yet.</text></svg>")
        return "".join(parts)
    t0, t1 = times[0].timestamp(), times[-1].timestamp()
    if t1 - t0 < 1.0:  # a single cycle: centre it
        t0, t1 = t0 - 60, t1 + 60
    span = t1 - t0
    tops = {}
    for axis in ("left", "right"):
        values = [v for _, _, vals, ax in series if ax == axis for v in vals if v is not None]
        tops[axis] = _nice_top(max(values, default=0) * 1.1)

    def x(t: datetime) -> float:
        return pad_l + (t.timestamp() - t0) / span * plot_w

    def y(v: float, axis: str) -> float:
        return pad_t + plot_h - v / tops[axis] * plot_h

    parts.append(f'<rect x="{pad_l}" y="{pad_t}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#ccc"/>')
    for frac in (0.0, 0.5, 1.0):
        yy = pad_t + plot_h - frac * plot_h
        parts.append(f'<text x="{pad_l - 6}" y="{yy + 4:.1f}" text-anchor="end" font-size="11" fill="#555">'
                     f'{_tick(tops["left"] * frac)}</text>')
        parts.append(f'<text x="{width - pad_r + 6}" y="{yy + 4:.1f}" font-size="11" fill="#555">'
                     f'{_tick(tops["right"] * frac)}</text>')
    ends = [(times[0], "start"), (times[-1], "end")] if times[-1] != times[0] else [(times[0], "middle")]
    for t, anchor in ends:
        parts.append(f'<text x="{x(t):.1f}" y="{height - 8}" text-anchor="{anchor}" font-size="11" fill="#555">'
                     f'{t:%Y-%m-%d %H:%M} UTC</text>')
    for i, (label, colour, line, axis) in enumerate(series):
        path, pen_down = [], False
        for t, v in zip(times, line):
            if v is None:
                pen_down = False
                continue
            path.append(f'{"L" if pen_down else "M"}{x(t):.1f},{y(v, axis):.1f}')
            pen_down = True
        parts.append(f'<path d="{" ".join(path)}" fill="none" stroke="{colour}" stroke-width="1.6" '
                     f'data-series="{escape(label)}"/>')
        if len(times) <= 60:  # few cycles: mark each one so a lone point shows
            parts += [f'<circle cx="{x(t):.1f}" cy="{y(v, axis):.1f}" r="2.5" fill="{colour}"/>'
                      for t, v in zip(times, line) if v is not None]
        parts.append(f'<rect x="{pad_l + 8 + i * 190}" y="6" width="12" height="4" fill="{colour}"/>'
                     f'<text x="{pad_l + 24 + i * 190}" y="12" font-size="11">{escape(label)} ({axis} axis)</text>')
    parts.append("</svg>")
    return "".join(parts)


def _nice_top(value: float) -> float:
    """The axis top: the first of 1, 2, 4, 6, 8 (× a power of ten) at or above ``value``, so
    that the ticks at its half and top are the values they stand at (a label of 3 at 3.3
    misreads a chart of dynos)."""
    if value <= 1:
        return 1.0
    scale = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 4, 6, 8, 10):
        if step * scale >= value:
            return float(step * scale)
    return 10.0 * scale


def _tick(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"
