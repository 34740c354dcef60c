"""Job functions for the fan-out benchmarks (``LocalCluster(jobs=["bench.jobs"])``, run from the repo root)."""

from __future__ import annotations

from typing import Any

import taskq_sdk


@taskq_sdk.job
def inc(x: Any) -> Any:
    """A trivial per-row function: the fan-out's own cost is what the benchmark sees."""
    return x + 1
