"""Bars that follow a wait: ``job.wait(progress=True)`` and ``batch.wait(progress=True)``.

Notebook-aware, never notebook-dependent: in a Jupyter kernel a job's bar is an ipywidgets bar
and a batch's a live widget (with ``taskq-sdk[notebook]`` installed); everywhere else, and in a
notebook without ipywidgets, a tqdm bar. The job side of progress is
:func:`taskq_sdk.report_progress`::

    job.wait(progress=True)          # a bar until the job finishes
    job.wait(progress="tqdm")        # force the terminal bar
    job.wait(progress="widget")      # force the widget bar (needs ipywidgets)
    batch.wait(progress=True)        # items done / failed / running, rate and ETA
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import ConfigurationError
from ..models import JobStatus, Progress
from .notebook import in_notebook, note_missing_widgets, require_ipywidgets, show_in_cell

if TYPE_CHECKING:
    from ..batch import BatchCounts, BatchManifest

__all__ = [
    "BatchView",
    "ProgressView",
    "TqdmBatchView",
    "TqdmView",
    "WidgetProgressView",
    "make_batch_view",
    "make_view",
    "tqdm_class",
]


def tqdm_class(notebook: bool | None = None) -> Any:
    """tqdm's notebook bar inside Jupyter (when ipywidgets is there), its terminal bar elsewhere.

    Example::

        bar = tqdm_class()(total=100, desc="items")
    """
    if notebook is None:
        notebook = in_notebook()
    import tqdm as tqdm_mod

    if notebook:
        try:
            import ipywidgets  # noqa: F401  (tqdm.notebook needs it)
            import tqdm.notebook

            return tqdm.notebook.tqdm
        except ImportError:
            note_missing_widgets()
    return tqdm_mod.tqdm


@runtime_checkable
class ProgressView(Protocol):
    """Something that shows a job's progress while a wait blocks (updated from the client's loop thread)."""

    def update(self, status: JobStatus, progress: Progress) -> None: ...

    def close(self, status: JobStatus) -> None: ...


def _status_text(status: JobStatus, last: JobStatus | None) -> str:
    if status.finished:
        return status.value
    # the wait ended without the job finishing (Ctrl-C, timeout): the job lives on
    return f"stopped waiting (job still {(last or status).value})"


class TqdmView:
    """A tqdm bar (notebook flavour inside Jupyter, terminal flavour elsewhere) for one job.

    Example::

        view = TqdmView("3f2a… add", notebook=False)
        view.update(JobStatus.in_progress, Progress(fraction=0.5, message="half"))
        view.close(JobStatus.complete)
    """

    def __init__(self, label: str, *, notebook: bool | None = None) -> None:
        self._bar = tqdm_class(notebook)(
            total=1000,
            desc=label,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}{postfix}",
            leave=True,
        )
        self._last = 0
        self._status: JobStatus | None = None

    def update(self, status: JobStatus, progress: Progress) -> None:
        self._status = status
        value = round((progress.fraction or 0.0) * 1000)
        if status is JobStatus.complete:
            value = 1000
        if value > self._last:
            self._bar.update(value - self._last)
            self._last = value
        post = status.value if not progress.message else f"{status.value} · {progress.message}"
        self._bar.set_postfix_str(post[:60], refresh=True)

    def notice(self, text: str) -> None:
        """Print a warning above the bar (e.g. that no live worker serves the job)."""
        self._bar.write(f"⚠ {text}")

    def close(self, status: JobStatus) -> None:
        if status is JobStatus.complete and self._last < 1000:
            self._bar.update(1000 - self._last)
            self._last = 1000
        self._bar.set_postfix_str(_status_text(status, self._status), refresh=True)
        self._bar.close()


class WidgetProgressView:
    """An ipywidgets bar for one job (label, bar, status and message), displayed where it is created.

    Create it in the thread running the cell (so the bar appears under that cell); updates may
    come from any thread. ``display=False`` builds it without showing it (tests, custom layouts).

    Example::

        view = WidgetProgressView("3f2a… add")
        job.wait(progress=view)
    """

    def __init__(self, label: str, *, display: bool = True) -> None:
        widgets = require_ipywidgets()
        self.label = widgets.HTML(value=f"<code>{_escape(label)}</code>")
        self.bar = widgets.FloatProgress(value=0.0, min=0.0, max=1.0, bar_style="info")
        self.status = widgets.HTML(value="waiting")
        self.note = widgets.HTML(value="")
        self.box = widgets.VBox([widgets.HBox([self.label, self.bar, self.status]), self.note])
        self._started = time.monotonic()
        self._status: JobStatus | None = None
        if display:
            show_in_cell(self.box)

    def update(self, status: JobStatus, progress: Progress) -> None:
        self._status = status
        if progress.fraction is not None:
            self.bar.value = progress.fraction
        if status is JobStatus.complete:
            self.bar.value = 1.0
        text = status.value + (f" · {progress.message}" if progress.message else "")
        self.status.value = f"{_escape(text[:80])} · {time.monotonic() - self._started:.1f}s"

    def notice(self, text: str) -> None:
        """Show a warning under the bar (e.g. that no live worker serves the job)."""
        self.note.value = f"<span style='color:#b45309'>⚠ {_escape(text)}</span>"

    def close(self, status: JobStatus) -> None:
        style = {JobStatus.complete: "success", JobStatus.failed: "danger"}.get(status, "warning")
        if status is JobStatus.complete:
            self.bar.value = 1.0
        self.bar.bar_style = style
        self.status.value = f"{_escape(_status_text(status, self._status))} · {time.monotonic() - self._started:.1f}s"


def _escape(text: str) -> str:
    import html

    return html.escape(text, quote=False)


def make_view(kind: bool | str | ProgressView, label: str) -> ProgressView | None:
    """The progress view asked for: ``True``/``"auto"`` picks by environment, ``"tqdm"`` forces tqdm.

    ``"widget"`` forces the ipywidgets bar, ``"notebook"`` tqdm's notebook bar; a
    :class:`ProgressView` object is used as it is.

    Example::

        view = make_view(True, "job 3f2a…")
    """
    if isinstance(kind, ProgressView):
        return kind
    if kind is False or kind in ("none", ""):
        return None
    if kind is True or kind == "auto":
        if in_notebook():
            try:
                return WidgetProgressView(label)
            except ImportError:
                note_missing_widgets()
        return TqdmView(label, notebook=False)
    if kind == "tqdm":
        return TqdmView(label, notebook=False)
    if kind == "widget":
        return WidgetProgressView(label, display=in_notebook())
    if kind == "notebook":
        return TqdmView(label, notebook=True)
    raise ValueError(f"progress= takes True, False, 'auto', 'tqdm', 'widget', 'notebook' or a view, not {kind!r}")


# ---------------------------------------------------------------------------- batches
@runtime_checkable
class BatchView(Protocol):
    """Something that shows a batch's progress while a wait blocks (a tqdm bar or a widget)."""

    def update(self, counts: BatchCounts) -> None: ...

    def close(self, counts: BatchCounts | None) -> None: ...


class TqdmBatchView:
    """A tqdm bar over the batch's items (notebook flavour in Jupyter, terminal elsewhere).

    Example::

        view = TqdmBatchView("batch exp1 · score", total=10_000)
    """

    def __init__(self, label: str, total: int, *, notebook: bool | None = None) -> None:
        self._bar = tqdm_class(notebook)(total=total, desc=label, unit="item", leave=True, smoothing=0.1)
        self._last = 0

    def update(self, counts: BatchCounts) -> None:
        post = []
        if counts.failed:
            post.append(f"{counts.failed:,} failed")
        if counts.running:
            post.append(f"{counts.running:,} running")
        self._bar.set_postfix_str(", ".join(post), refresh=False)
        if counts.done > self._last:
            self._bar.update(counts.done - self._last)
            self._last = counts.done

    def notice(self, text: str) -> None:
        """Print a warning above the bar (e.g. that no live worker serves the batch's function)."""
        self._bar.write(f"⚠ {text}")

    def close(self, counts: BatchCounts | None) -> None:
        if counts is not None:
            self.update(counts)
        self._bar.close()


def make_batch_view(
    kind: bool | str | BatchView, manifest: BatchManifest, on_cancel: Callable[[], Any] | None
) -> BatchView | None:
    """The view a batch wait asked for, created (and displayed) in the calling thread.

    ``True``/``"auto"``: a live widget in Jupyter (tqdm without ipywidgets), tqdm elsewhere;
    ``"widget"``, ``"tqdm"``, ``"notebook"`` force one; a :class:`BatchView` is used as it is.

    Example::

        view = make_batch_view(True, batch.manifest, on_cancel=batch.cancel)
    """
    if isinstance(kind, BatchView):
        return kind
    if kind is False or kind in ("none", ""):
        return None
    label = f"{manifest.function} ({manifest.batch[:16]})"
    if kind == "widget" or (kind in (True, "auto") and in_notebook()):
        from .widgets import WidgetBatchView

        try:
            view = WidgetBatchView(manifest, on_cancel=on_cancel)
        except ImportError:
            if kind == "widget":
                raise
            return TqdmBatchView(label, manifest.n_items)
        show_in_cell(view.widget)
        return view
    if kind in (True, "auto", "tqdm", "notebook"):
        return TqdmBatchView(label, manifest.n_items, notebook=True if kind == "notebook" else None)
    raise ConfigurationError(f"progress= takes True, False, 'tqdm', 'notebook' or 'widget', not {kind!r}")
