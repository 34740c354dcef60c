"""The chunk format shared by batch submission (client) and the built-in chunk runner (worker).

``client.map(fn, items, chunk_size=N)`` and ``df.taskq.apply`` submit jobs of
:data:`RUNNER_NAME`; each carries one chunk of items in one of :data:`MODES`::

    take_items([10, 20, 30], [0, 2], "items")     # [10, 30]: a re-run of two failed items
"""

from __future__ import annotations

from typing import Any

__all__ = ["MODES", "RUNNER_NAME", "chunk_calls", "take_items"]

#: the built-in job that runs a chunk of items through a job function (:mod:`taskq_sdk.jobs.mapping`)
RUNNER_NAME = "taskq_map_chunk"
#: how the runner calls the function per item: one argument, unpacked tuples, a column's values,
#: several columns as positional arguments, or each row as a dict
MODES = ("items", "star", "series", "columns", "rows")


def take_items(items: Any, offsets: list[int], mode: str) -> Any:
    """The payload of a chunk reduced to the items at ``offsets`` (for re-running some of them)."""
    if mode in ("columns", "rows") and not hasattr(items, "columns"):
        names, cols = items
        return [list(names), [take_items(c, offsets, "series") for c in cols]]
    if isinstance(items, list | tuple):
        return [items[o] for o in offsets]
    if hasattr(items, "iloc"):
        return items.iloc[offsets].reset_index(drop=True)
    return items[offsets]


def chunk_calls(items: Any, mode: str) -> int:
    """How many calls a chunk makes (each takes a slot of its function's rate limit); 1 when unknown.

    Example::

        chunk_calls([["a", "b"], [[1, 2, 3], [4, 5, 6]]], "columns")   # 3
    """
    try:
        if mode in ("columns", "rows") and not hasattr(items, "columns"):
            cols = items[1]
            return max(len(cols[0]), 1) if cols else 1
        return max(len(items), 1)
    except (TypeError, IndexError, KeyError):
        return 1
