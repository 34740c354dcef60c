"""``client.dashboard()``: a live notebook view of queues, workers, throughput and recent jobs.

It refreshes on the client's event loop (never blocking the kernel), shows jobs finished per minute as a
chart (stacked per function, failures in red, with axes and a legend; inline SVG, no plotting library), and
lets you cancel running jobs or retry failed ones. It stops updating when closed, or when its client closes::

    dash = client.dashboard(workspace="exp1", interval=2.0)
    dash                       # in a notebook: the live widget
    dash.close()

Needs ipywidgets: ``pip install "taskq-sdk[notebook]"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ..errors import TaskqError
from ..metrics import MinuteByFunction, per_minute_by_function
from ..models import JobInfo, JobStatus, WorkerInfo
from .html import PALETTE, color_of
from .notebook import require_ipywidgets, show_in_cell

if TYPE_CHECKING:
    from ..client import AsyncClient
    from ..metrics import Metrics

__all__ = ["Dashboard", "DashboardData"]


def _widgets() -> Any:
    return require_ipywidgets("The dashboard")


class DashboardData:
    """One refresh's worth of numbers (kept separate from the widgets, so it is easy to test).

    Example::

        data = await DashboardData.collect(client, workspace=None, minutes=15)
        data.throughput, data.failure_rate, data.depth
    """

    def __init__(
        self,
        minute: Metrics,
        series: list[MinuteByFunction],
        workers: list[WorkerInfo],
        jobs: list[JobInfo],
        depth: dict[str, int],
    ) -> None:
        self.minute = minute
        self.series = series
        self.workers = workers
        self.jobs = jobs
        self.depth = depth

    @property
    def live_workers(self) -> list[WorkerInfo]:
        now = time.time()
        return [
            w
            for w in self.workers
            if w.status in ("running", "draining") and w.last_seen and now - w.last_seen.timestamp() < 10
        ]

    @property
    def throughput(self) -> float:
        """Jobs finished per second over the last minute."""
        return (self.minute.totals.finished or 0) / 60.0

    @property
    def failure_rate(self) -> float:
        return self.minute.totals.failure_rate

    @classmethod
    async def collect(
        cls, client: AsyncClient, *, workspace: str | None, minutes: int, recent: int = 8
    ) -> DashboardData:
        minute = await client.metrics(window=60, workspace=workspace)
        series = await per_minute_by_function(client.core, minutes=minutes, workspace=workspace)
        workers = await client.workers()
        jobs = await client.jobs(workspace=workspace, limit=recent)
        return cls(minute, series, workers, jobs, dict(minute.queue_depth))


def limits_html(limits: dict[str, dict[str, Any]]) -> str:
    """The dashboard's line about rate and concurrency limits ('' when none is in use).

    Example::

        limits_html({"key:openai": {"limit": "openai: 50/s", "running": 2, "passed": 9, "waited": 4}})
    """
    if not limits:
        return ""
    parts = [
        f"<code>{html.escape(v.get('limit') or name)}</code> running {v.get('running', 0)}, "
        f"passed {v.get('passed', 0)}, waited {v.get('waited', 0)}"
        for name, v in sorted(limits.items())
    ]
    return "<br>limits: " + " &middot; ".join(parts)


def _short(job_id: str) -> str:
    """Ids short enough for a row, still telling batch jobs (``<batch>.<n>``) apart."""
    return job_id if len(job_id) <= 28 else f"{job_id[:12]}…{job_id[-12:]}"


#: function colours in the chart, in order of each function's share of the window; failures are red
FUNCTION_COLORS = ("#2563eb", "#0d9488", "#7c3aed", "#ca8a04", "#db2777", "#0891b2")
OTHER = "other functions"


def _nice_ceiling(n: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten that is >= n (an axis maximum that reads well)."""
    scale = 1
    while True:
        for step in (1, 2, 5):
            if step * scale >= n:
                return step * scale
        scale *= 10


def _legend_order(series: list[MinuteByFunction], keep: int) -> list[str]:
    totals: dict[str, int] = {}
    for _, by_fn in series:
        for fn, (complete, _failed) in by_fn.items():
            totals[fn] = totals.get(fn, 0) + complete
    ranked = sorted(totals, key=lambda fn: (-totals[fn], fn))
    return ranked if len(ranked) <= keep else [*ranked[: keep - 1], OTHER]


def chart_svg(series: list[MinuteByFunction], width: int = 460, height: int = 90) -> str:
    """Jobs finished per minute as stacked bars per function, failures in red on top, with axes and a legend.

    Dependency-free SVG (the dashboard redraws it every refresh). Example::

        chart_svg([(29_000_000, {"resize": (10, 1)}), (29_000_001, {"resize": (4, 0), "ocr": (6, 2)})])
    """
    left, right, top, bottom, legend_h = 38, 8, 20, 30, 18
    plot_w = width - left - right
    n = max(1, len(series))
    order = _legend_order(series, len(FUNCTION_COLORS))
    colors = dict(zip(order, FUNCTION_COLORS, strict=False))
    peak = max((sum(c + f for c, f in by_fn.values()) for _, by_fn in series), default=0)
    y_max = _nice_ceiling(max(peak, 1))
    base = top + height

    def y(value: float) -> float:
        return base - value / y_max * height

    out = [
        f'<svg width="{width}" height="{base + bottom + legend_h}" xmlns="http://www.w3.org/2000/svg" '
        'style="font:10px sans-serif">',
        f'<text x="{left}" y="12" font-weight="bold">jobs/min, last {n} min (peak {peak})</text>',
    ]
    for tick in (0, y_max // 2, y_max) if y_max > 1 else (0, 1):
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#e5e7eb"/>')
        out.append(f'<text x="{left - 4}" y="{y(tick) + 3:.1f}" text-anchor="end">{tick}</text>')
    out.append(f'<text transform="translate(10 {top + height / 2:.0f}) rotate(-90)" text-anchor="middle">jobs</text>')
    bar = plot_w / n
    for i, (minute, by_fn) in enumerate(series):
        x = left + i * bar + 1
        stamp = time.strftime("%H:%M", time.localtime(minute * 60))
        level = 0.0
        for fn in order:
            if fn == OTHER:
                complete = sum(c for name, (c, _f) in by_fn.items() if name not in colors or name == OTHER)
            else:
                complete = by_fn.get(fn, (0, 0))[0]
            if complete:
                out.append(
                    f'<rect x="{x:.1f}" y="{y(level + complete):.1f}" width="{bar - 2:.1f}" '
                    f'height="{complete / y_max * height:.1f}" fill="{colors[fn]}">'
                    f"<title>{html.escape(fn)}: {complete} complete at {stamp}</title></rect>"
                )
                level += complete
        failed = {fn: f for fn, (_c, f) in by_fn.items() if f}
        if failed:
            total = sum(failed.values())
            what = ", ".join(f"{html.escape(fn)} {f}" for fn, f in sorted(failed.items()))
            out.append(
                f'<rect x="{x:.1f}" y="{y(level + total):.1f}" width="{bar - 2:.1f}" '
                f'height="{total / y_max * height:.1f}" fill="{PALETTE["failed"]}">'
                f"<title>{total} failed at {stamp}: {what}</title></rect>"
            )
    out.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{base}" stroke="#6b7280"/>')
    out.append(f'<line x1="{left}" x2="{width - right}" y1="{base}" y2="{base}" stroke="#6b7280"/>')
    for i in sorted({0, (n - 1) // 2, n - 1}):
        if i < len(series):
            cx = left + (i + 0.5) * bar
            label = time.strftime("%H:%M", time.localtime(series[i][0] * 60))
            out.append(f'<text x="{cx:.1f}" y="{base + 12}" text-anchor="middle">{label}</text>')
    out.append(f'<text x="{left + plot_w / 2:.0f}" y="{base + 25}" text-anchor="middle">minute (local time)</text>')
    x = float(left)
    for name, color in [*colors.items(), ("failed", PALETTE["failed"])]:
        out.append(f'<rect x="{x:.0f}" y="{base + bottom + 4}" width="9" height="9" fill="{color}"/>')
        out.append(f'<text x="{x + 12:.0f}" y="{base + bottom + 12}">{html.escape(name[:24])}</text>')
        x += 18 + 6 * min(len(name), 24)
    out.append("</svg>")
    return "".join(out)


class Dashboard:
    """A live dashboard widget bound to one client (see the module docstring).

    Example::

        dash = client.dashboard(interval=1.0)
        await dash.refresh()     # one refresh now (AsyncClient); Client refreshes on its own thread
    """

    def __init__(
        self,
        client: AsyncClient,
        *,
        workspace: str | None = None,
        interval: float = 2.0,
        minutes: int = 15,
        run: Callable[[Coroutine[Any, Any, Any]], Any] | None = None,
    ) -> None:
        w = _widgets()
        self._client = client
        self._workspace = workspace
        self._interval = max(0.25, float(interval))
        self._minutes = minutes
        self._run = run
        self._task: Any = None
        self._closed = False
        self.refreshes = 0
        self.last_error: str | None = None
        self.data: DashboardData | None = None
        self.title = w.HTML()
        self.stats = w.HTML()
        self.chart = w.HTML()
        self.workers_html = w.HTML()
        self.jobs_box = w.VBox()
        self.close_button = w.Button(description="Stop updating", layout=w.Layout(width="140px"))
        self.close_button.on_click(lambda _b: self.close())
        self.widget = w.VBox(
            [
                w.HBox([self.title, self.close_button]),
                self.stats,
                self.chart,
                w.HTML("<b>Workers</b>"),
                self.workers_html,
                w.HTML("<b>Recent jobs</b>"),
                self.jobs_box,
            ]
        )
        self.job_buttons: dict[str, tuple[Any, Any]] = {}
        self._pending: Any = None
        self._render_title("starting…")

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Dashboard:
        """Begin refreshing every ``interval`` seconds on the client's loop."""
        if self._task is None and not self._closed:
            coro = self._loop()
            self._task = self._run(coro) if self._run is not None else asyncio.ensure_future(coro)
        return self

    def close(self) -> None:
        """Stop updating (the widget stays on screen with its last numbers)."""
        self._closed = True
        task = self._task
        if task is not None:
            with contextlib.suppress(Exception):
                task.cancel()
        self._render_title("stopped")
        self.close_button.disabled = True

    @property
    def running(self) -> bool:
        return not self._closed

    def _ipython_display_(self) -> None:
        show_in_cell(self.widget)

    def _repr_html_(self) -> str:
        return self.stats.value or "<i>taskq dashboard (starting)</i>"

    async def _loop(self) -> None:
        while not self._closed and not self._client.is_closed:
            await self.refresh()
            await asyncio.sleep(self._interval)
        if self._client.is_closed:
            self._closed = True
            self._render_title("stopped (client closed)")

    # ------------------------------------------------------------------ rendering
    def _render_title(self, state: str) -> None:
        scope = f"tenant <code>{html.escape(self._client.tenant)}</code>" if self._client.tenant else "all tenants"
        ws = f", workspace <code>{html.escape(self._workspace)}</code>" if self._workspace else ""
        self.title.value = f"<b>taskq dashboard</b> &mdash; {scope}{ws} &middot; <i>{html.escape(state)}</i>"

    async def refresh(self) -> DashboardData | None:
        """Collect fresh numbers and redraw (errors are shown, not raised)."""
        try:
            data = await DashboardData.collect(self._client, workspace=self._workspace, minutes=self._minutes)
        except TaskqError as exc:
            self.last_error = str(exc)
            self._render_title(f"error: {exc}"[:200])
            return None
        self.data = data
        self.refreshes += 1
        self.last_error = None
        self._render_title(f"updated {time.strftime('%H:%M:%S')}")
        depth = " ".join(f"<code>{html.escape(q)}</code>={n}" for q, n in data.depth.items())
        t = data.minute.totals
        p95 = "–" if t.p95_seconds is None else f"{t.p95_seconds:.3f}s"
        self.stats.value = (
            f"queue depth {depth} &middot; live workers <b>{len(data.live_workers)}</b> &middot; "
            f"throughput <b>{data.throughput:.2f}</b> jobs/s &middot; failure rate "
            f"<b>{data.failure_rate:.1%}</b> &middot; p95 {p95} (last minute)" + limits_html(data.minute.limits)
        )
        self.chart.value = chart_svg(data.series)
        rows = "".join(
            f"<tr><td><code>{html.escape(w.id)}</code></td><td>{html.escape(w.status)}</td>"
            f"<td>{w.ongoing}/{w.max_jobs}</td><td>{w.complete}</td><td>{w.failed}</td>"
            f"<td>{w.uptime:.0f}s</td></tr>"
            for w in data.workers
        )
        self.workers_html.value = (
            "<table><tr><th>worker</th><th>status</th><th>running</th><th>done</th><th>failed</th>"
            f"<th>uptime</th></tr>{rows}</table>"
            if rows
            else "<i>no workers seen</i>"
        )
        self._render_jobs(data.jobs)
        return data

    def _render_jobs(self, jobs: list[JobInfo]) -> None:
        w = _widgets()
        children = []
        buttons: dict[str, tuple[Any, Any]] = {}
        for info in jobs:
            color = color_of(info.status)
            prog = f" {info.progress.fraction:.0%}" if info.progress.fraction is not None else ""
            label = w.HTML(
                f"<code>{html.escape(_short(info.id))}</code> {html.escape(info.function or '?')} "
                f'<b style="color:{color}">{info.status.value}</b>{prog} '
                f"<small>{html.escape((info.error or info.waiting or '')[:80])}</small>"
            )
            cancel = w.Button(description="Cancel", layout=w.Layout(width="80px"))
            retry = w.Button(description="Retry", layout=w.Layout(width="80px"))
            cancel.disabled = info.status.finished
            if info.status.finished:  # a finished job offers Retry (when it did not complete), never Cancel
                cancel.layout.visibility = "hidden"
            retry.disabled = not info.status.finished or info.status is JobStatus.complete
            cancel.on_click(lambda _b, i=info.id: self._act("cancel", i))
            retry.on_click(lambda _b, i=info.id: self._act("retry", i))
            buttons[info.id] = (cancel, retry)
            children.append(w.HBox([cancel, retry, label]))
        self.job_buttons = buttons
        self.jobs_box.children = children if children else [w.HTML("<i>no jobs yet</i>")]

    def _act(self, action: str, job_id: str) -> None:
        async def go() -> None:
            try:
                job = await self._client.job(job_id)
                if action == "cancel":
                    await job.cancel()
                else:
                    await job.retry()
            except TaskqError as exc:
                self.last_error = str(exc)
            await self.refresh()

        if self._run is not None:
            self._run(go())
        else:
            self._pending = asyncio.ensure_future(go())
