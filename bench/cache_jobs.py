"""Job functions for ``bench/cache.py``: a row function that costs something (so a cache can save it)."""

from __future__ import annotations

import taskq_sdk


@taskq_sdk.job
def score(x: int) -> int:
    """About 0.2 ms of pure Python per row: a stand-in for a model or a parser."""
    total = 0
    for i in range(2_000):
        total = (total * 31 + i + x) % 1_000_003
    return total
