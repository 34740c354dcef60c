"""``client.dashboard()``: a live notebook view of queues, workers, throughput and recent jobs.

It refreshes on the client's event loop (never blocking the kernel), shows a small per-minute
throughput/failure chart (inline SVG, no plotting library), and lets you cancel or retry recent
jobs. It stops updating when closed, or when its client closes::

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
from ..metrics import per_minute
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
        series: list[tuple[int, int, int]],
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
        series = await per_minute(client.core, minutes=minutes, workspace=workspace)
        workers = await client.workers()
        jobs = await client.jobs(workspace=workspace, limit=recent)
        return cls(minute, series, workers, jobs, dict(minute.queue_depth))


def _short(job_id: str) -> str:
    """Ids short enough for a row, still telling batch jobs (``<batch>.<n>``) apart."""
    return job_id if len(job_id) <= 28 else f"{job_id[:12]}…{job_id[-12:]}"


def chart_svg(series: list[tuple[int, int, int]], width: int = 360, height: int = 70) -> str:
    """A tiny bar chart: finished jobs per minute, failures stacked in red.

    Example::

        chart_svg([(0, 10, 1), (1, 20, 0)])
    """
    peak = max((c + f for _, c, f in series), default=0) or 1
    n = max(1, len(series))
    bar = width / n
    parts = [
        f'<svg width="{width}" height="{height + 14}" xmlns="http://www.w3.org/2000/svg" style="font:10px sans-serif">'
    ]
    for i, (_, complete, failed) in enumerate(series):
        x = i * bar + 1
        h_ok = complete / peak * height
        h_bad = failed / peak * height
        parts.append(
            f'<rect x="{x:.1f}" y="{height - h_ok - h_bad:.1f}" width="{bar - 2:.1f}" height="{h_ok:.1f}" '
            f'fill="{PALETTE["complete"]}"><title>{complete} complete</title></rect>'
        )
        if failed:
            parts.append(
                f'<rect x="{x:.1f}" y="{height - h_bad:.1f}" width="{bar - 2:.1f}" height="{h_bad:.1f}" '
                f'fill="{PALETTE["failed"]}"><title>{failed} failed</title></rect>'
            )
    parts.append(f'<text x="0" y="{height + 12}">jobs/min, last {n} min (peak {peak})</text></svg>')
    return "".join(parts)


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
            f"<b>{data.failure_rate:.1%}</b> &middot; p95 {p95} (last minute)"
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
                f"<small>{html.escape((info.error or '')[:80])}</small>"
            )
            cancel = w.Button(description="Cancel", layout=w.Layout(width="80px"))
            retry = w.Button(description="Retry", layout=w.Layout(width="80px"))
            cancel.disabled = info.status.finished
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
