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
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .models import JobInfo

if TYPE_CHECKING:
    from .metrics import Metrics

__all__ = ["Timeline", "plot_metrics", "require_pyplot"]

#: the colours of job states in every chart and view (the same as the HTML views')
STATE_COLORS = {"complete": "#16a34a", "failed": "#dc2626", "cancelled": "#9ca3af", "running": "#2563eb"}
INSTALL = 'pip install "taskq-sdk[notebook]"'


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


class Timeline:
    """When each job of a batch (or any list of jobs) was queued, started and finished, and where it ran.

    Example::

        tl = batch.timeline()
        tl.to_frame()        # job_id, function, worker, status, attempts, enqueued/started/finished, wait/run seconds
        tl.plot()            # a matplotlib Axes: one lane per worker, a bar per job run, coloured by outcome
    """

    def __init__(self, infos: Sequence[JobInfo]) -> None:
        self.infos = list(infos)

    def __len__(self) -> int:
        return len(self.infos)

    def __repr__(self) -> str:
        ran = sum(1 for i in self.infos if i.started_at is not None)
        return f"<Timeline {len(self.infos)} jobs, {ran} started>"

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

    def plot(self, *, ax: Any = None) -> Any:
        """One lane per worker, one bar per job from start to finish, coloured by outcome; returns the Axes."""
        started = [i for i in self.infos if i.started_at is not None]
        workers = sorted({i.worker or "?" for i in started})
        ax = _axes(ax, "timeline.plot()", (8.0, 1.0 + 0.4 * max(2, len(workers))))
        if not started:
            ax.set_title(f"{len(self.infos)} jobs, none started yet")
            return ax
        times = [t for i in self.infos for t in (i.enqueued_at, i.started_at) if t is not None]
        t0 = min(times)
        finished = [i.finished_at for i in started if i.finished_at is not None]
        # a run still going is drawn up to now; when all finished, the chart ends with the last of them
        now = datetime.now(t0.tzinfo) if len(finished) < len(started) else max(finished)
        from matplotlib.patches import Patch

        handles = []
        for status in ("complete", "failed", "cancelled", "running"):
            count = sum(1 for i in started if _outcome(i) == status)
            if count:
                handles.append(Patch(color=STATE_COLORS[status], label=f"{status} ({count})"))
        for lane, worker in enumerate(workers):
            # (start, end) seconds after t0 and the outcome of each run on this worker, by start
            runs = sorted(
                (
                    (s.started_at - t0).total_seconds(),
                    ((s.finished_at or now) - t0).total_seconds(),
                    _outcome(s),
                )
                for s in started
                if (s.worker or "?") == worker and s.started_at is not None
            )
            rows = _pack([(begin, end) for begin, end, _ in runs])
            height = 0.8 / (max(rows, default=0) + 1)
            for (begin, end, outcome), row in zip(runs, rows, strict=True):
                bottom = lane - 0.4 + row * height
                ax.broken_barh(
                    [(begin, max(end - begin, 0.002))], (bottom, height * 0.9), facecolors=STATE_COLORS[outcome]
                )
        ax.set_yticks(range(len(workers)), [_short_worker(w) for w in workers])
        ax.set_ylim(-0.6, len(workers) - 0.4)
        ax.set_xlabel("seconds since the first job was queued")
        ax.set_ylabel("worker")
        span = (now - t0).total_seconds()
        ax.set_title(f"{len(self.infos)} jobs on {len(workers)} workers, {span:.1f}s")
        ax.set_xlim(left=0)
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize="small")
        return ax


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
