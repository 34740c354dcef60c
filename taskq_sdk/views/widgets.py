"""Live notebook views (ipywidgets) of jobs and batches: status, progress bar, message, Cancel.

A job handle shown in a cell becomes a :class:`JobWidget`, and it keeps updating after the cell
finished: the update loop runs on the client's event loop (for a :class:`~taskq_sdk.Client`, its
own thread), never blocking the kernel. It stops when the job finishes, when the client closes,
or on :meth:`JobWidget.stop`. Needs ``pip install "taskq-sdk[notebook]"``; without ipywidgets a job
shows as HTML that says so. :class:`WidgetBatchView` is a batch's live view (``batch.widget()``)::

    job = client.submit("score", "great product")
    job                              # last line of a cell: the live view
    view = JobWidget(job)            # the same, as an object (view.cancel_button, view.bar, ...)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import html
import reprlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from ..errors import BrokerUnavailable, ClientClosed, short_id
from ..models import JobInfo, JobStatus
from .html import GRAPH_MAX_SHOWN, badge, color_of, elapsed_text, error_html, graph_html, job_html, status_badge
from .notebook import INSTALL_WIDGETS, in_notebook, require_ipywidgets

if TYPE_CHECKING:
    from .._core import ClientCore
    from ..batch import BatchCounts, BatchManifest
    from ..handles import AsyncJob, Job

__all__ = ["JobWidget", "WidgetBatchView", "job_mimebundle", "job_text", "neighbour_statuses"]

_BAR_STYLES = {
    JobStatus.complete: "success",
    JobStatus.failed: "danger",
    JobStatus.lost: "danger",
    JobStatus.cancelled: "warning",
    JobStatus.expired: "warning",
    JobStatus.retrying: "warning",
}
_repr = reprlib.Repr()
_repr.maxstring = 120
_repr.maxother = 120


class JobWidget:
    """A live ipywidgets view of one job, with a Cancel button; updates itself until the job finishes.

    Works for :class:`~taskq_sdk.Job` (updates run on its client's event-loop thread) and for
    :class:`~taskq_sdk.AsyncJob` created on a running loop (a notebook's). ``refresh`` is the
    most seconds between two looks at the job; progress events arrive at once in between.

    Example::

        view = JobWidget(job)
        view                                   # in a notebook: status, bar, message, elapsed, Cancel
        view.cancel_button.click()             # same as pressing Cancel
        view.stop()                            # stop updating (the job is not affected)
    """

    def __init__(self, job: Job | AsyncJob, *, refresh: float = 1.0, log_lines: int = 5, start: bool = True) -> None:
        widgets = require_ipywidgets()
        self.job = job
        self.refresh = refresh
        self.log_lines = log_lines
        self._ajob: AsyncJob = _async_job(job)
        self._core: ClientCore = self._ajob.core
        loop = self._core.loop
        self._loop: asyncio.AbstractEventLoop | None = loop if loop is not None and not loop.is_closed() else None
        self._task: asyncio.Task[None] | None = None
        self._finished = threading.Event()

        self.title = widgets.HTML(value=f"<b>{type(job).__name__}</b> <code>{html.escape(job.id)}</code>")
        self.bar = widgets.FloatProgress(
            value=0.0, min=0.0, max=1.0, bar_style="info", layout=widgets.Layout(width="240px")
        )
        self.status = widgets.HTML(value=status_badge("queued"))
        self.elapsed = widgets.Label(value="")
        self.attempts = widgets.Label(value="")
        self.cancel_button = widgets.Button(
            description="Cancel", icon="stop", tooltip="Cancel this job", layout=widgets.Layout(width="90px")
        )
        self.message = widgets.HTML(value="")
        self.result = widgets.HTML(value="")
        self.logs = widgets.HTML(value="")
        #: the small dependency graph (jobs it waits on -> this job -> jobs waiting on it), when there is one
        self.graph = widgets.HTML(value="")
        self.cancel_button.on_click(self._on_cancel)
        row = widgets.HBox(
            [self.bar, self.status, self.elapsed, self.attempts, self.cancel_button],
            layout=widgets.Layout(align_items="center", grid_gap="8px"),
        )
        self.box = widgets.VBox([self.title, row, self.graph, self.message, self.result, self.logs])
        last = self._ajob.last_info
        if last is not None:
            self._show(last)
        if start:
            self.start()

    # ------------------------------------------------------------------ lifecycle
    @property
    def running(self) -> bool:
        """Whether the view is still following its job."""
        return self._task is not None and not self._finished.is_set()

    def start(self) -> None:
        """Start following the job (done by the constructor unless ``start=False``)."""
        if self._task is not None or self._finished.is_set():
            return
        loop = self._loop
        if loop is None or loop.is_closed() or self._core.is_closed:
            self._stopped("not live: " + ("the client is closed" if self._core.is_closed else "no event loop"))
            return
        started = threading.Event()

        def spawn() -> None:
            self._task = loop.create_task(self._follow(), name=f"taskq-widget-{short_id(self.job.id)}")
            self._core.track(self._task)
            started.set()

        if _in_loop_thread(loop):
            spawn()
        else:
            loop.call_soon_threadsafe(spawn)
            started.wait(5)

    def stop(self) -> None:
        """Stop updating the view (the job itself is not affected)."""
        task, loop = self._task, self._loop
        if task is not None and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)

    def close(self) -> None:
        """Stop updating and remove the widgets."""
        self.stop()
        self.box.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.box._repr_mimebundle_(**kwargs)

    # ------------------------------------------------------------------ the update loop
    async def _follow(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            self._stopped("stopped updating (the view was stopped or its client closed)")
            raise
        except ClientClosed:
            self._stopped("stopped updating: the client was closed")
        except Exception as exc:  # a view's trouble must never reach the loop
            self._stopped(f"stopped updating: {type(exc).__name__}: {exc}")
        finally:
            self._finished.set()

    async def _run(self) -> None:
        ajob, loop = self._ajob, asyncio.get_running_loop()
        async with self._core.job_events(ajob.id) as sub:
            outage: float | None = None
            next_logs = 0.0
            while True:
                try:
                    info = await ajob.info()
                    outage = None
                except BrokerUnavailable:
                    outage = outage or loop.time()
                    if loop.time() - outage > self._core.settings.outage_budget:
                        raise
                    self.message.value = "<i>the server is unreachable; retrying</i>"
                    await asyncio.sleep(1.0)
                    continue
                self._show(info)
                if info.parents or info.children:
                    await self._show_graph(info)
                if info.status.finished or info.status is JobStatus.not_found:
                    await self._finish(info)
                    return
                if self.log_lines and loop.time() >= next_logs:
                    next_logs = loop.time() + 2.0
                    self._show_logs(await ajob.logs(self.log_lines))
                deadline = loop.time() + self.refresh
                while (remaining := deadline - loop.time()) > 0:
                    event = await sub.get(timeout=remaining)
                    if event is None:
                        break
                    if event.get("e") != "progress":
                        break  # a state change: look again now
                    fraction = event.get("p")
                    if isinstance(fraction, int | float):
                        self.bar.value = min(1.0, max(0.0, float(fraction)))
                    if event.get("m"):
                        self.message.value = html.escape(str(event["m"]))

    async def _finish(self, info: JobInfo) -> None:
        ajob = self._ajob
        self.cancel_button.disabled = True
        self.cancel_button.layout.display = "none"
        if info.status is JobStatus.not_found:
            self.message.value = "no such job (or not visible to this client's tenant)"
            return
        if self.log_lines:
            try:
                self._show_logs(await ajob.logs(self.log_lines))
            except Exception:
                pass
        try:
            if info.status is JobStatus.complete:
                value = await ajob.result(timeout=10)
                self.result.value = f"result: <code>{html.escape(_repr.repr(value))}</code>"
            elif info.status is not JobStatus.cancelled:  # the message already says it was cancelled
                exc = await ajob.exception(timeout=10)
                if exc is not None:
                    self.result.value = error_html(exc)
        except Exception as exc:
            self.result.value = f"<i>{html.escape(type(exc).__name__)}: {html.escape(str(exc))}</i>"

    # ------------------------------------------------------------------ rendering (any thread)
    def _show(self, info: JobInfo) -> None:
        status = info.status
        p = info.progress
        if p.fraction is not None:
            self.bar.value = p.fraction
        if status is JobStatus.complete:
            self.bar.value = 1.0
        self.bar.bar_style = _BAR_STYLES.get(status, "info")
        self.status.value = status_badge(status)
        self.elapsed.value = elapsed_text(info)
        if info.attempts:
            self.attempts.value = f"attempt {info.attempts}" + (f" of {info.max_tries}" if info.max_tries else "")
        if p.message:
            self.message.value = html.escape(p.message)
        if info.waiting and not status.finished:  # "waiting for rate limit openai: 50/s"
            self.message.value = html.escape(info.waiting)
        if info.error and status.finished:
            self.message.value = f'<span style="color:#dc2626">{html.escape(info.error)}</span>'
        if info.function:
            call = info.args_repr or info.function
            self.title.value = (
                f"<b>{type(self.job).__name__}</b> <code>{html.escape(self.job.id)}</code> "
                f"&middot; <code>{html.escape(call[:200])}</code>"
            )

    async def _show_graph(self, info: JobInfo) -> None:
        statuses = await neighbour_statuses(self._core, info)
        self.graph.value = graph_html(self.job.id, info.status, info.parents, info.children, statuses)

    def _show_logs(self, lines: list[str]) -> None:
        if lines:
            text = html.escape("\n".join(lines[-self.log_lines :]))
            self.logs.value = f'<pre style="font-size:11px;margin:0;line-height:1.3">{text}</pre>'

    def _stopped(self, why: str) -> None:
        self.cancel_button.disabled = True
        note = f'<span style="color:#6b7280;font-size:11px">{html.escape(why)}</span>'
        self.result.value = (self.result.value + "<br>" if self.result.value else "") + note

    # ------------------------------------------------------------------ Cancel
    def _on_cancel(self, _button: Any = None) -> None:
        loop = self._loop
        if loop is None or loop.is_closed() or self._core.is_closed:
            self._stopped("cannot cancel: the client is closed")
            return
        self.cancel_button.disabled = True
        self.cancel_button.description = "Cancelling"
        future = asyncio.run_coroutine_threadsafe(self._ajob.cancel(), loop)
        future.add_done_callback(self._cancelled)

    def _cancelled(self, future: concurrent.futures.Future[bool]) -> None:
        try:
            ok = future.result()
        except BaseException as exc:
            self.message.value = f"cancel failed: {html.escape(type(exc).__name__)}: {html.escape(str(exc))}"
            self.cancel_button.disabled = False
            self.cancel_button.description = "Cancel"
            return
        if not ok:
            self.message.value = "nothing to cancel: the job already finished"


def _in_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _async_job(job: Job | AsyncJob) -> AsyncJob:
    """The :class:`AsyncJob` behind a handle (a :class:`Job` wraps one)."""
    return cast("AsyncJob", getattr(job, "async_job", job))


def job_mimebundle(job: Job | AsyncJob) -> dict[str, Any] | None:
    """How a job shows in a notebook: a live :class:`JobWidget` (HTML saying how to get one without ipywidgets).

    The bundle also carries ``text/html`` and ``text/plain`` of the job as it is at display time, for front
    ends that have no widget manager; showing the job again shows its new state. Outside a Jupyter kernel it
    returns ``None``, so IPython's terminal uses the plain repr.

    Example::

        job._repr_mimebundle_()   # {'application/vnd.jupyter.widget-view+json': ..., 'text/html': ...}
    """
    if not in_notebook():
        return None
    # a fresh look on every display, so that front ends without a widget manager (VS Code without the
    # renderer, Colab without the custom manager, exports) show the job as it is now when it is shown again
    static = _static_html(job)
    try:
        view = JobWidget(job)
    except ImportError:
        hint = html.escape(INSTALL_WIDGETS)
        note = f'<div style="font-size:11px;color:#6b7280">For a live view: <code>{hint}</code></div>'
        return {"text/html": static + note, "text/plain": repr(job)}
    bundle: dict[str, Any] = dict(view._repr_mimebundle_())
    bundle["text/html"] = static  # for exports and viewers without a widget manager
    bundle["text/plain"] = repr(job)
    return bundle


def job_text(job: Job | AsyncJob) -> str:
    """The job's text repr after a fresh look (plain IPython shows this; re-showing the job is current).

    Example::

        job_text(job)   # '<Job 3f2a… score complete>'
    """
    _look_briefly(_async_job(job))
    return repr(job)


async def neighbour_statuses(core: ClientCore, info: JobInfo) -> dict[str, JobStatus]:
    """The statuses of the jobs ``info``'s job waits on and of those waiting on it (the drawn ones), in one call.

    Example::

        await neighbour_statuses(core, await job.info())   # {'3f2a…': JobStatus.complete}
    """
    ids = list(dict.fromkeys([*info.parents[:GRAPH_MAX_SHOWN], *info.children[:GRAPH_MAX_SHOWN]]))
    if not ids:
        return {}
    states = await core.call(lambda s: s.states(ids))
    return {i: st.status for i, st in zip(ids, states, strict=True)}


def _static_html(job: Job | AsyncJob) -> str:
    """The job's HTML card after a fresh look, its dependency graph coloured by its neighbours' statuses."""
    ajob = _async_job(job)
    _look_briefly(ajob)
    info = ajob.last_info
    if info is None or not (info.parents or info.children):
        return job._repr_html_()
    statuses = _run_briefly(ajob, neighbour_statuses(ajob.core, info)) or {}
    return job_html(job.id, info, kind=type(job).__name__, statuses=statuses)


def _run_briefly(ajob: AsyncJob, coro: Any, timeout: float = 2.0) -> Any:
    # only from another thread than the client's loop (a Job's); None if it cannot be done in time
    loop = ajob.core.loop
    if loop is None or loop.is_closed() or not loop.is_running() or _in_loop_thread(loop):
        coro.close()
        return None
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result(timeout)
    except Exception:
        future.cancel()
        return None


def _look_briefly(ajob: AsyncJob, timeout: float = 2.0) -> None:
    # one look at the job so the first paint (and the static fallback) is not "unknown"; only from
    # another thread than the client's loop (a Job's): an AsyncJob's loop is the notebook's own
    _run_briefly(ajob, ajob.info(), timeout)


class WidgetBatchView:
    """A live ipywidgets view of a batch: status, bar, items done / failed / running, rate, ETA and Cancel.

    Example::

        view = WidgetBatchView(batch.manifest, on_cancel=batch.cancel)   # display(view.widget)
    """

    def __init__(self, manifest: BatchManifest, on_cancel: Callable[[], Any] | None = None) -> None:
        w = require_ipywidgets("Live batch widgets")
        self._m = manifest
        self.title = w.HTML(
            f"<b>Batch</b> <code>{html.escape(manifest.id)}</code> · <code>{html.escape(manifest.function)}</code>"
            f" · {manifest.n_items:,} items"
        )
        if manifest.key:
            self.title.value += f" · key <code>{html.escape(manifest.key)}</code>"
        self.status = w.HTML(badge("queued", color_of("queued")))
        self.bar = w.FloatProgress(value=0.0, min=0.0, max=1.0, layout=w.Layout(width="320px"))
        self.label = w.HTML("")
        self.cancel = w.Button(description="Cancel", button_style="danger", layout=w.Layout(width="80px"))
        if on_cancel is not None:
            self.cancel.on_click(lambda _b: on_cancel())
        else:
            self.cancel.disabled = True
        self.note = w.HTML("")
        self.widget = w.VBox([self.title, w.HBox([self.status, self.bar, self.cancel]), self.label, self.note])

    def update(self, counts: BatchCounts) -> None:
        status = counts.status
        self.status.value = badge(status, color_of(status))
        self.bar.value = counts.fraction
        self.bar.bar_style = {"complete": "success", "failed": "danger", "partial": "warning"}.get(status, "info")
        reused = f" · {counts.reused:,} jobs reused (already submitted with this key)" if counts.reused else ""
        self.label.value = html.escape(str(counts) + reused)
        if counts.finished:
            self._finish()

    def _finish(self) -> None:
        """A finished batch offers no Cancel: the button goes (disabled too, for front ends without layout)."""
        self.cancel.disabled = True
        self.cancel.layout.display = "none"

    def notice(self, text: str) -> None:
        """Show a warning under the counts (e.g. that no live worker serves the batch's function)."""
        self.note.value = f"<span style='color:#b45309'>⚠ {html.escape(text)}</span>"

    def close(self, counts: BatchCounts | None) -> None:
        if counts is not None:
            self.update(counts)
        self._finish()
