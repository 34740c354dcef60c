"""Client-side progress display for ``job.wait(progress=True)``: a bar that follows the job.

Notebook-aware, never notebook-dependent: in a terminal it is a tqdm bar on stderr; in a notebook
it is tqdm's notebook bar (live widgets come with ``taskq_sdk[notebook]``). The job side of
progress is :func:`taskq_sdk.report_progress`::

    job.wait(progress=True)          # a bar until the job finishes
    job.wait(progress="tqdm")        # force the terminal bar
"""

from __future__ import annotations

import sys
from typing import Any, Protocol

from .models import JobStatus, Progress

__all__ = ["ProgressView", "TqdmView", "in_notebook", "make_view"]


def in_notebook() -> bool:
    """Whether we run inside a Jupyter kernel (judged from ``sys.modules``, never by importing IPython)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    get = getattr(ipython, "get_ipython", None)
    shell = get() if callable(get) else None
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


class ProgressView(Protocol):
    """Something that shows a job's progress while a wait blocks."""

    def update(self, status: JobStatus, progress: Progress) -> None: ...

    def close(self, status: JobStatus) -> None: ...


class TqdmView:
    """A tqdm bar (notebook flavour inside Jupyter, terminal flavour elsewhere) for one job.

    Example::

        view = TqdmView("3f2a… add", notebook=False)
        view.update(JobStatus.in_progress, Progress(fraction=0.5, message="half"))
        view.close(JobStatus.complete)
    """

    def __init__(self, label: str, *, notebook: bool | None = None) -> None:
        if notebook is None:
            notebook = in_notebook()
        import tqdm as tqdm_mod

        bar_cls: Any = tqdm_mod.tqdm
        if notebook:
            try:
                import tqdm.notebook

                bar_cls = tqdm.notebook.tqdm
            except ImportError:
                pass
        self._bar = bar_cls(
            total=1000,
            desc=label,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}{postfix}",
            leave=True,
        )
        self._last = 0

    def update(self, status: JobStatus, progress: Progress) -> None:
        value = round((progress.fraction or 0.0) * 1000)
        if status is JobStatus.complete:
            value = 1000
        if value > self._last:
            self._bar.update(value - self._last)
            self._last = value
        post = status.value if not progress.message else f"{status.value} · {progress.message}"
        self._bar.set_postfix_str(post[:60], refresh=True)

    def close(self, status: JobStatus) -> None:
        if status is JobStatus.complete and self._last < 1000:
            self._bar.update(1000 - self._last)
            self._last = 1000
        self._bar.set_postfix_str(status.value, refresh=True)
        self._bar.close()


def make_view(kind: bool | str, label: str) -> ProgressView | None:
    """The progress view asked for: ``True``/``"auto"`` picks by environment, ``"tqdm"`` forces tqdm.

    Example::

        view = make_view(True, "job 3f2a…")
    """
    if kind is False or kind in ("none", ""):
        return None
    if kind is True or kind == "auto":
        return TqdmView(label)
    if kind == "tqdm":
        return TqdmView(label, notebook=False)
    if kind == "notebook":
        return TqdmView(label, notebook=True)
    raise ValueError(f"progress= takes True, False, 'auto', 'tqdm' or 'notebook', not {kind!r}")
