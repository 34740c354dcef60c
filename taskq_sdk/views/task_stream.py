"""The task stream as inline SVG: one lane per worker, a bar per row (or job) run, coloured by outcome.

What ``batch.timeline()`` shows by itself in a notebook (no matplotlib needed); ``Timeline.plot()``
draws the same layout with matplotlib. Stragglers (rows over 3x the median time) get a dark
outline, and every bar says what it is when hovered::

    html = task_stream_html(batch.timeline().stream())
"""

from __future__ import annotations

import html
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..plotting import Bar, Stream

__all__ = ["ROW_COLORS", "task_stream_html"]

#: the colour of each row outcome (the palette of every view; ``Timeline.plot()`` uses the same)
ROW_COLORS = {
    "complete": "#16a34a",
    "failed": "#dc2626",
    "cancelled": "#9ca3af",
    "running": "#2563eb",
    "lost": "#d97706",
    "expired": "#6b7280",
}

WIDTH = 640
LABEL_WIDTH = 120
LANE_HEIGHT = 22
SUB_HEIGHT = 7  # at least this many pixels per run a worker had going at once
TOP = 22
BOTTOM = 34


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _short(worker: str) -> str:
    return worker if len(worker) <= 18 else f"{worker[:7]}…{worker[-9:]}"


def _merged(bars: list[Bar], tiny: float) -> list[tuple[Bar, str, str]]:
    """Bars to draw, with the first and last label each stands for: runs of rows too narrow to see apart
    (each under ``tiny`` seconds, back to back, same lane and outcome, no straggler) become one bar."""
    out: list[tuple[Bar, str, str]] = []
    for b in bars:
        if out:
            last, first, _ = out[-1]
            if (
                b.end - b.begin < tiny
                and last.end - last.begin < tiny * 50
                and not b.straggler
                and not last.straggler
                and (b.lane, b.sub, b.status) == (last.lane, last.sub, last.status)
                and b.label.startswith("row ")
                and first.startswith("row ")
                and abs(b.begin - last.end) < tiny / 2
            ):
                out[-1] = (replace(last, end=b.end), first, b.label)
                continue
        out.append((b, b.label, b.label))
    return out


def task_stream_html(stream: Stream) -> str:
    """The task stream as an HTML block with an inline SVG chart (lanes, bars, time axis, legend).

    Example::

        task_stream_html(batch.timeline().stream(max_rows=3000))   # '<div ...><svg ...>...</svg></div>'
    """
    if not stream.bars:
        return f"<div style='font-size:12px'>{_e(stream.title)}</div>"
    plot_w = WIDTH - LABEL_WIDTH - 10
    subs = [1] * len(stream.workers)
    for bar in stream.bars:
        subs[bar.lane] = max(subs[bar.lane], bar.subs)
    # a lane grows with the runs a worker had going at once, so each keeps a visible row of its own
    lane_h = [max(LANE_HEIGHT, SUB_HEIGHT * n + 4) for n in subs]
    tops = [TOP + sum(lane_h[:i]) for i in range(len(lane_h))]
    height = TOP + sum(lane_h) + BOTTOM
    scale = plot_w / (stream.span or 1.0)
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height}' "
        f"role='img' aria-label='{_e(stream.title)}' style='font:11px sans-serif'>",
        f"<text x='{LABEL_WIDTH}' y='14' font-weight='bold'>{_e(stream.title)}</text>",
    ]
    for lane, worker in enumerate(stream.workers):
        top = tops[lane]
        parts.append(
            f"<text x='{LABEL_WIDTH - 6}' y='{top + lane_h[lane] / 2 + 4:.1f}' text-anchor='end'>"
            f"<title>{_e(worker)}</title>{_e(_short(worker))}</text>"
        )
        line = top + lane_h[lane]
        parts.append(f"<line x1='{LABEL_WIDTH}' x2='{WIDTH - 10}' y1='{line}' y2='{line}' stroke='#e5e7eb'/>")
    for b, first, last in _merged(stream.bars, 2.0 / scale):
        h = (lane_h[b.lane] - 4) / b.subs
        y = tops[b.lane] + 2 + b.sub * h
        x = LABEL_WIDTH + b.begin * scale
        w = max((b.end - b.begin) * scale, 0.8)
        stroke = "stroke='#111827' stroke-width='0.8'" if b.straggler else "stroke='white' stroke-width='0.3'"
        what = first if first == last else f"{first}-{last.removeprefix('row ')}".replace("row ", "rows ", 1)
        tip = f"{what}: {b.status}, {b.end - b.begin:.3f}s from {b.begin:.2f}s" + (
            " (straggler)" if b.straggler else ""
        )
        parts.append(
            f"<rect x='{x:.2f}' y='{y:.2f}' width='{w:.2f}' height='{h * 0.9:.2f}' "
            f"fill='{ROW_COLORS.get(b.status, '#6b7280')}' {stroke}><title>{_e(tip)}</title></rect>"
        )
    axis_y = TOP + sum(lane_h)
    for frac in (0.0, 0.5, 1.0):
        x = LABEL_WIDTH + frac * plot_w
        anchor = "start" if frac == 0 else "end" if frac == 1 else "middle"
        parts.append(f"<text x='{x:.1f}' y='{axis_y + 13}' text-anchor='{anchor}'>{frac * stream.span:.1f}s</text>")
    legend_x = LABEL_WIDTH
    counts: dict[str, int] = {}
    for bar in stream.bars:
        counts[bar.status] = counts.get(bar.status, 0) + 1
    for status, color in ROW_COLORS.items():
        if status in counts:
            parts.append(f"<rect x='{legend_x}' y='{axis_y + 20}' width='10' height='10' fill='{color}'/>")
            label = f"{status} ({counts[status]})"
            parts.append(f"<text x='{legend_x + 14}' y='{axis_y + 29}'>{_e(label)}</text>")
            legend_x += 24 + 7 * len(label)
    if any(bar.straggler for bar in stream.bars):
        parts.append(
            f"<rect x='{legend_x}' y='{axis_y + 20}' width='10' height='10' fill='white' stroke='#111827'/>"
            f"<text x='{legend_x + 14}' y='{axis_y + 29}'>straggler (over 3x the median row)</text>"
        )
    parts.append("</svg>")
    return "<div class='taskq-task-stream'>" + "".join(parts) + "</div>"
