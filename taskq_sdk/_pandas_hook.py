"""``df.taskq`` without ``import taskq_sdk.pandas``: registered as soon as both taskq_sdk and pandas are loaded.

``import taskq_sdk`` must stay fast and must not import pandas. So if pandas is already loaded, a
tiny placeholder accessor is registered at once; if not, a finder on ``sys.meta_path`` waits for
pandas to be imported, registers it right after pandas finishes loading, and removes itself. The
placeholder imports :mod:`taskq_sdk.pandas` on first use of ``df.taskq``::

    import pandas as pd, taskq_sdk          # in either order
    pd.DataFrame({"x": [1]}).taskq          # a taskq_sdk.pandas.TaskqAccessor
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec

__all__ = ["LazyAccessor", "install", "register"]

_NAME = "taskq"


class LazyAccessor:
    """The accessor pandas holds until first use: builds a :class:`taskq_sdk.pandas.TaskqAccessor`.

    Example::

        df.taskq.apply(fn, column="text")   # imports taskq_sdk.pandas the first time
    """

    def __new__(cls, obj: Any) -> Any:
        from .pandas import TaskqAccessor

        return TaskqAccessor(obj)


def register(pd: ModuleType) -> None:
    """Register the placeholder as ``.taskq`` on DataFrame and Series, unless taskq_sdk's accessor is there.

    Example::

        register(pandas)
    """
    extensions = pd.api.extensions
    for cls, register_accessor in (
        (pd.DataFrame, extensions.register_dataframe_accessor),
        (pd.Series, extensions.register_series_accessor),
    ):
        current = getattr(cls.__dict__.get(_NAME), "_accessor", None)
        if not str(getattr(current, "__module__", "")).startswith("taskq_sdk."):
            register_accessor(_NAME)(LazyAccessor)


class _PandasWatcher:
    """A ``sys.meta_path`` finder that finds nothing itself: it wraps pandas' own loader to register after it.

    (Not an ``importlib.abc.MetaPathFinder`` subclass: importing ``importlib.abc`` would double the
    import time of taskq_sdk.)
    """

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != "pandas":
            return None
        spec = None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                break
        loader = getattr(spec, "loader", None)
        exec_module = getattr(loader, "exec_module", None)
        if spec is None or loader is None or exec_module is None:
            return spec

        def exec_then_register(module: ModuleType) -> None:
            exec_module(module)
            _uninstall()
            try:
                register(module)
            except Exception:  # pragma: no cover - a pandas without extensions: no accessor, no harm
                pass

        loader.exec_module = exec_then_register
        found: ModuleSpec = spec
        return found


_watcher = _PandasWatcher()


def _uninstall() -> None:
    if _watcher in sys.meta_path:
        sys.meta_path.remove(_watcher)


def install() -> None:
    """Register ``.taskq`` now if pandas is loaded, else when it is (called by ``import taskq_sdk``).

    Example::

        install()
    """
    pd = sys.modules.get("pandas")
    if pd is not None and hasattr(pd, "api"):
        try:
            register(pd)
        except Exception:  # pragma: no cover - see above
            pass
        return
    if _watcher not in sys.meta_path:
        sys.meta_path.insert(0, _watcher)
