"""Charts the ecosystem's way: pandas frames plotted with matplotlib, returning the ``Axes``.

``client.metrics().plot()`` draws finished jobs per function (complete, failed, cancelled stacked);
``batch.timeline().plot()`` draws when each job of a batch ran, one lane per worker::

    ax = client.metrics(window=600).plot()          # a matplotlib Axes: ax.set_title(...), ax.figure.savefig(...)
    tl = batch.timeline()                           # tl.to_frame(): one row per job with its times
    tl.plot()

matplotlib and pandas are imported only when a chart is drawn: ``pip install "taskq-sdk[notebook]"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .models import JobInfo
from .views.task_stream import ROW_COLORS, task_stream_html

if TYPE_CHECKING:
    from .metrics import Metrics

__all__ = ["Bar", "Stream", "Timeline", "TimelineRows", "plot_metrics", "require_pyplot"]

#: the colours of job states in every chart and view (the same as the HTML views')
STATE_COLORS = {"complete": "#16a34a", "failed": "#dc2626", "cancelled": "#9ca3af", "running": "#2563eb"}
INSTALL = 'pip install "taskq-sdk[notebook]"'
#: a row's outcome in the task stream (the batch's per-item statuses, plus a job still running)
ROW_STATUSES = ["complete", "failed", "cancelled", "lost", "expired", "pending", "running"]
MAX_HTML_ROWS = 20_000  # beyond this the notebook view draws a bar per job (plot() still draws every row)


def require_pyplot(what: str) -> Any:
    """``matplotlib.pyplot``, or an ImportError that names ``what`` and the exact install line.

    Example::

        plt = require_pyplot("metrics.plot()")
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(f"{what} needs matplotlib: {INSTALL}") from exc
    return plt


def _pandas(what: str) -> Any:
    try:
        import pandas as pd
    except ImportError as exc:
        raise ImportError(f"{what} needs pandas: {INSTALL}") from exc
    return pd


def _axes(ax: Any, what: str, size: tuple[float, float]) -> Any:
    plt = require_pyplot(what)
    if ax is None:
        _fig, ax = plt.subplots(figsize=size)
    return ax


def plot_metrics(metrics: Metrics, *, ax: Any = None, **kwargs: Any) -> Any:
    """Finished jobs per function as stacked horizontal bars (complete, failed, cancelled); returns the Axes.

    ``kwargs`` go to pandas' ``DataFrame.plot.barh``. Example::

        ax = plot_metrics(client.metrics(window=300))
    """
    _pandas("metrics.plot()")
    columns = ["complete", "failed", "cancelled"]
    frame = metrics.to_frame()
    ax = _axes(ax, "metrics.plot()", (7.0, 0.5 + 0.45 * max(2, frame["function"].nunique())))
    scope = "all time" if metrics.window is None else f"last {metrics.window / 60:g} min"
    if frame.empty:
        ax.set_title(f"Jobs by function, {scope}: none finished")
        ax.set_xlabel("jobs")
        return ax
    by_function = frame.groupby("function")[columns].sum()
    by_function = by_function.loc[by_function.sum(axis=1).sort_values().index]
    by_function.plot.barh(stacked=True, ax=ax, color=[STATE_COLORS[c] for c in columns], width=0.7, **kwargs)
    ax.set_xlabel("jobs finished")
    ax.set_ylabel("function")
    ax.set_title(f"Jobs by function, {scope} (failure rate {metrics.totals.failure_rate:.1%})")
    ax.legend(title="ended", loc="lower right", frameon=False)
    return ax


@dataclass
class TimelineRows:
    """Per item of a batch: which job and worker ran it, its status and attempts, when it started and for how long.

    Filled by ``batch.timeline()``; times are ``None`` where not known (a chunk still running, or
    submitted without ``timing=True``). Example::

        rows = TimelineRows()
        rows.add(0, "job-1", "w1", "complete", 1, 1_700_000_000_000_000, 5_000)
    """

    position: list[int] = field(default_factory=list)
    job_id: list[str] = field(default_factory=list)
    worker: list[str | None] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)
    started_us: list[int | None] = field(default_factory=list)
    duration_us: list[int | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.position)

    def add(
        self,
        position: int,
        job_id: str,
        worker: str | None,
        status: str,
        attempts: int,
        started_us: int | None,
        duration_us: int | None,
    ) -> None:
        self.position.append(position)
        self.job_id.append(job_id)
        self.worker.append(worker)
        self.status.append(status)
        self.attempts.append(attempts)
        self.started_us.append(started_us)
        self.duration_us.append(duration_us)


@dataclass
class Bar:
    """One bar of the task stream: a row run (or a whole job run when its rows' times are unknown)."""

    lane: int  # the worker's lane
    sub: int  # the sub-row inside the lane (a worker running several jobs at once)
    subs: int  # sub-rows in that lane
    begin: float  # seconds since the first job was queued
    end: float
    status: str
    label: str  # "row 12" or "job <id>"
    straggler: bool = False


@dataclass
class Stream:
    """The task stream laid out: the workers' lanes, the bars, and the time span (seconds)."""

    workers: list[str]
    bars: list[Bar]
    span: float
    title: str


class Timeline:
    """When each job of a batch (or any list of jobs) ran, where, and, per row, when each item ran.

    ``to_frame()`` has one row per job; ``rows()`` one row per item (the task stream: which worker
    ran which row when, so stragglers show); ``plot()`` draws it (matplotlib) and a notebook shows
    it as a chart by itself (``_repr_html_``, no matplotlib needed).

    Example::

        tl = batch.timeline()
        tl.to_frame()        # job_id, function, worker, status, attempts, enqueued/started/finished, wait/run seconds
        tl.rows()            # position, job_id, worker, status, attempts, started_at, finished_at, duration_s
        tl.plot()            # a matplotlib Axes: one lane per worker, a bar per row (or job) run, coloured by outcome
    """

    def __init__(self, infos: Sequence[JobInfo], rows: TimelineRows | None = None) -> None:
        self.infos = list(infos)
        self.row_data = rows

    def __len__(self) -> int:
        return len(self.infos)

    def __repr__(self) -> str:
        ran = sum(1 for i in self.infos if i.started_at is not None)
        rows = f", {len(self.row_data)} rows" if self.row_data is not None else ""
        return f"<Timeline {len(self.infos)} jobs, {ran} started{rows}>"

    def to_frame(self) -> Any:
        """One row per job: ids, worker, status, attempts, the three times, and wait/run seconds (pandas)."""
        pd = _pandas("timeline.to_frame()")

        def seconds(a: datetime | None, b: datetime | None) -> float | None:
            return None if a is None or b is None else (b - a).total_seconds()

        records = [
            {
                "job_id": i.id,
                "function": i.function,
                "worker": i.worker,
                "status": i.status.value,
                "attempts": i.attempts,
                "enqueued_at": i.enqueued_at,
                "started_at": i.started_at,
                "finished_at": i.finished_at,
                "wait_seconds": seconds(i.enqueued_at, i.started_at),
                "run_seconds": seconds(i.started_at, i.finished_at),
            }
            for i in self.infos
        ]
        frame = pd.DataFrame.from_records(records, columns=list(records[0]) if records else ["job_id"])
        for column in ("enqueued_at", "started_at", "finished_at"):
            if column in frame:
                frame[column] = pd.to_datetime(frame[column], utc=True)
        return frame

    def rows(self) -> Any:
        """One row per item, in input order: where, when and how long it ran (pandas).

        Columns: position, job_id, worker, status, attempts, started_at, finished_at, duration_s
        (times are NaT where not known: chunks need the batch run with ``timing=True``).

        Example::

            rows = batch.timeline().rows()
            rows.nlargest(5, "duration_s")          # the stragglers, and the workers that ran them
        """
        pd = _pandas("timeline.rows()")
        import numpy as np

        r = self.row_data or TimelineRows()
        nat = np.iinfo(np.int64).min
        started = np.array([nat if t is None else t for t in r.started_us], dtype=np.int64)
        took = np.array([np.nan if d is None else d / 1e6 for d in r.duration_us], dtype=float)
        begin = pd.Series(started.view("datetime64[us]")).astype("datetime64[ns]").dt.tz_localize("UTC")
        frame = pd.DataFrame(
            {
                "position": np.array(r.position, dtype=np.int64),
                "job_id": pd.Categorical(r.job_id),
                "worker": pd.Categorical(r.worker),
                "status": pd.Categorical(r.status, categories=ROW_STATUSES),
                "attempts": np.array(r.attempts, dtype=np.int32),
                "started_at": begin,
                "finished_at": begin + pd.to_timedelta(took, unit="s"),
                "duration_s": took,
            }
        )
        return frame.sort_values("position", kind="stable").reset_index(drop=True)

    def stream(self, *, rows: bool | None = None, max_rows: int | None = None) -> Stream:
        """The task stream laid out for drawing: lanes per worker and their bars.

        A bar per row run where its time is known (``rows=False``: a bar per job run; more than
        ``max_rows`` timed rows: a bar per job), stragglers (rows over 3x the median time) marked.

        Example::

            s = batch.timeline().stream()
            s.workers, s.bars[:1], s.title
        """
        started = [i for i in self.infos if i.started_at is not None]
        workers = sorted({i.worker or "?" for i in started})
        if not started:
            return Stream(workers, [], 0.0, f"{len(self.infos)} jobs, none started yet")
        times = [t for i in self.infos for t in (i.enqueued_at, i.started_at) if t is not None]
        t0 = min(times)
        finished = [i.finished_at for i in started if i.finished_at is not None]
        # a run still going is drawn up to now; when all finished, the chart ends with the last of them
        now = datetime.now(t0.tzinfo) if len(finished) < len(started) else max(finished)
        per_job = self._timed_rows(t0.timestamp()) if rows is not False else {}
        if max_rows is not None and sum(map(len, per_job.values())) > max_rows:
            per_job = {}
        durations = sorted(end - begin for spans in per_job.values() for _, begin, end, _ in spans)
        slow = 3 * durations[len(durations) // 2] if len(durations) >= 5 else None
        bars: list[Bar] = []
        for lane, worker in enumerate(workers):
            runs = sorted(
                (
                    (
                        (s.started_at - t0).total_seconds(),
                        ((s.finished_at or now) - t0).total_seconds(),
                        s,
                    )
                    for s in started
                    if (s.worker or "?") == worker and s.started_at is not None
                ),
                key=lambda run: (run[0], run[1]),
            )
            subs = _pack([(begin, end) for begin, end, _ in runs])
            n_subs = max(subs, default=0) + 1
            for (begin, end, info), sub in zip(runs, subs, strict=True):
                spans = per_job.get(info.id)
                if not spans:
                    bars.append(Bar(lane, sub, n_subs, begin, end, _outcome(info), f"job {info.id}"))
                    continue
                for position, rb, re_, status in spans:
                    straggler = slow is not None and re_ - rb > slow
                    bars.append(Bar(lane, sub, n_subs, rb, re_, status, f"row {position}", straggler))
        span = (now - t0).total_seconds()
        title = f"{len(self.infos)} jobs on {len(workers)} workers, {span:.1f}s"
        if durations and len(durations) > len(started):
            longest = max((b for b in bars if b.label.startswith("row")), key=lambda b: b.end - b.begin)
            title += f"; slowest {longest.label}: {longest.end - longest.begin:.2f}s"
        return Stream(workers, bars, span, title)

    def _timed_rows(self, t0: float) -> dict[str, list[tuple[int, float, float, str]]]:
        """Rows whose start is known, by the job that ran them: (position, begin s, end s, status)."""
        out: dict[str, list[tuple[int, float, float, str]]] = {}
        r = self.row_data
        if r is None:
            return out
        for k, began in enumerate(r.started_us):
            if began is None:
                continue
            begin = began / 1e6 - t0
            took = r.duration_us[k]
            end = begin + (took / 1e6 if took is not None else 0.0)
            status = r.status[k] if r.status[k] in ROW_COLORS else "complete"
            out.setdefault(r.job_id[k], []).append((r.position[k], begin, end, status))
        return out

    def plot(self, *, ax: Any = None, rows: bool | None = None) -> Any:
        """Draw the task stream with matplotlib and return the Axes.

        One lane per worker, a bar per row run (per job run where row times are unknown, or with
        ``rows=False``), coloured by outcome, stragglers outlined.

        Example::

            ax = batch.timeline().plot()
        """
        stream = self.stream(rows=rows)
        per_lane = {b.lane: b.subs for b in stream.bars}
        lanes = sum(max(1.0, n / 4) for n in per_lane.values()) if per_lane else 2.0  # taller with many runs at once
        ax = _axes(ax, "timeline.plot()", (8.0, 1.0 + 0.4 * max(2.0, lanes)))
        if not stream.bars:
            ax.set_title(stream.title)
            return ax
        from matplotlib.patches import Patch

        handles = []
        for status, color in ROW_COLORS.items():
            count = sum(1 for b in stream.bars if b.status == status)
            if count:
                handles.append(Patch(color=color, label=f"{status} ({count})"))
        groups: dict[tuple[int, int, int, str, bool], list[tuple[float, float]]] = {}
        for b in stream.bars:
            groups.setdefault((b.lane, b.sub, b.subs, b.status, b.straggler), []).append(
                (b.begin, max(b.end - b.begin, 0.002))
            )
        for (lane, sub, subs, status, straggler), spans in groups.items():
            height = 0.8 / subs
            bottom = lane - 0.4 + sub * height
            ax.broken_barh(
                spans,
                (bottom, height * 0.9),
                facecolors=ROW_COLORS[status],
                edgecolors="black" if straggler else "white",
                linewidth=1.0 if straggler else 0.3,
            )
        if any(b.straggler for b in stream.bars):
            handles.append(Patch(facecolor="white", edgecolor="black", label="straggler (>3x median)"))
        ax.set_yticks(range(len(stream.workers)), [_short_worker(w) for w in stream.workers])
        ax.set_ylim(-0.6, len(stream.workers) - 0.4)
        ax.set_xlabel("seconds since the first job was queued")
        ax.set_ylabel("worker")
        ax.set_title(stream.title)
        ax.set_xlim(left=0)
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize="small")
        return ax

    def _repr_html_(self) -> str:
        return task_stream_html(self.stream(max_rows=MAX_HTML_ROWS))


def _pack(spans: list[tuple[float, float]]) -> list[int]:
    """A row for each (start, end) span, sorted by start, so that spans sharing a row never overlap."""
    ends: list[float] = []
    rows = []
    for begin, end in spans:
        row = next((n for n, last in enumerate(ends) if last <= begin), len(ends))
        if row == len(ends):
            ends.append(end)
        else:
            ends[row] = end
        rows.append(row)
    return rows


def _outcome(info: JobInfo) -> str:
    status = info.status.value
    if status in ("complete", "failed", "cancelled"):
        return status
    return "running"


def _short_worker(worker_id: str) -> str:
    return worker_id if len(worker_id) <= 24 else f"{worker_id[:10]}…{worker_id[-10:]}"
