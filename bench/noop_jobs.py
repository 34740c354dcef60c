"""Trivial job functions for the benchmarks (served by both the taskq worker and raw arq workers)."""

from __future__ import annotations

from typing import Any

import taskq_sdk


@taskq_sdk.job
async def noop(ctx: dict[str, Any] | None = None) -> int:
    return 1


async def arq_noop(ctx: dict[str, Any]) -> int:
    """The same no-op, as a plain arq coroutine."""
    return 1
