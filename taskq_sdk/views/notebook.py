"""Is this a Jupyter kernel, and the optional notebook imports (with the line that installs them).

Detection reads ``sys.modules`` and never imports IPython (as ``tqdm.autonotebook`` does)::

    if in_notebook():
        widgets = require_ipywidgets()   # ImportError: Live notebook views need ipywidgets: pip install ...
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["INSTALL_WIDGETS", "in_notebook", "note_missing_widgets", "require_ipywidgets", "show_in_cell"]

#: how to get live widgets, shown wherever a view falls back to text or static HTML
INSTALL_WIDGETS = 'pip install "taskq-sdk[notebook]"'

_noted_missing_widgets = False


def in_notebook() -> bool:
    """Whether we run inside a Jupyter kernel (judged from ``sys.modules``, never by importing IPython)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    get = getattr(ipython, "get_ipython", None)
    shell = get() if callable(get) else None
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def require_ipywidgets(what: str = "Live notebook views") -> Any:
    """Import ipywidgets, or raise an ImportError that says how to install it.

    Example::

        widgets = require_ipywidgets()
    """
    try:
        import ipywidgets
    except ImportError as exc:
        raise ImportError(f"{what} need ipywidgets: {INSTALL_WIDGETS}") from exc
    return ipywidgets


def show_in_cell(obj: Any) -> None:
    """Show ``obj`` under the running cell (only reached inside IPython)."""
    import IPython.display

    show: Any = IPython.display.display
    show(obj)


def note_missing_widgets() -> None:
    """Say once per process, on stderr, that widgets would look better and how to get them.

    Example::

        note_missing_widgets()   # taskq: ipywidgets is not installed, ... pip install "taskq-sdk[notebook]"
    """
    global _noted_missing_widgets
    if not _noted_missing_widgets:
        _noted_missing_widgets = True
        print(
            f"taskq: ipywidgets is not installed, so progress shows as text. For live widgets: {INSTALL_WIDGETS}",
            file=sys.stderr,
        )
