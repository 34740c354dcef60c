"""``chunk_size="auto"``: chunk sizes chosen from measured item times, so each job runs about
``TASKQ_TARGET_CHUNK_SECONDS`` and the workers finish together.

The time an item takes comes from the function's history (the chunk runner records seconds per
item after every chunk) or, the first time, from a probe: one single-item job per worker, written
as the batch's first chunks. Later chunks aim at the target duration, and the last ones shrink
(guided self-scheduling: never more than a share of what is left per worker) so no worker idles
while another finishes a big chunk::

    plan_sizes(400, per_item=0.005, workers=2, target=0.2)   # [40, 40, ..., 30, 23, 17, 13, ...]
    sizes = await choose_sizes(core, "score", n_items=400, queue="default", tenant="default", ...)
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from .._chunks import RUNNER_NAME
from ..errors import TaskqError

if TYPE_CHECKING:
    from .._core import ClientCore

__all__ = ["MAX_AUTO_CHUNK", "SINGLES_PER_WORKER", "choose_sizes", "plan_sizes", "unknown_sizes"]

#: batches of at most this many items per worker run one item per job: nothing to measure or gain
SINGLES_PER_WORKER = 4
#: no auto chunk holds more items than this (keeps each job's payload and result moderate)
MAX_AUTO_CHUNK = 20_000
#: without any measurement, aim at this many jobs per worker
UNKNOWN_JOBS_PER_WORKER = 16
#: live workers assumed when none could be counted
DEFAULT_WORKERS = 2
PROBE_POLL = 0.01  # seconds between looks at the probe's measurement


def plan_sizes(n_items: int, *, per_item: float, workers: int, target: float) -> list[int]:
    """Chunk sizes for ``n_items`` items of ``per_item`` seconds each over ``workers`` workers.

    Each chunk aims at ``target`` seconds; towards the end a chunk takes at most half of what is
    left per worker, but never less than an eighth of the full size, so the tail stays cheap.

    Example::

        plan_sizes(8, per_item=2.0, workers=2, target=0.2)   # [1, 1, 1, 1, 1, 1, 1, 1]
    """
    workers = max(1, workers)
    full = max(1, min(MAX_AUTO_CHUNK, round(target / per_item) if per_item > 0 else MAX_AUTO_CHUNK))
    floor = max(1, full // 8)
    sizes: list[int] = []
    left = n_items
    while left > 0:
        size = min(left, full, max(floor, math.ceil(left / (2 * workers))))
        sizes.append(size)
        left -= size
    return sizes


def unknown_sizes(n_items: int, *, workers: int) -> list[int]:
    """Chunk sizes when nothing is known about the function: about 16 jobs per worker, shrinking at the end.

    Example::

        unknown_sizes(400, workers=2)     # 13 items per job, smaller at the end
    """
    full = max(1, math.ceil(n_items / (UNKNOWN_JOBS_PER_WORKER * max(1, workers))))
    return plan_sizes(n_items, per_item=1.0, workers=workers, target=float(full))


async def live_workers(core: ClientCore, queue: str) -> int:
    """Live worker processes on ``queue`` that run chunks (0 when none is seen)."""
    try:
        workers = await core.workers()
    except TaskqError:
        return 0
    now = time.time()
    return sum(
        1
        for w in workers
        if w.status == "running"
        and w.queue == queue
        and RUNNER_NAME in w.functions
        and w.last_seen is not None
        and now - w.last_seen.timestamp() < 10
    )


async def measured(core: ClientCore, tenant: str, function: str) -> float | None:
    """The last measured seconds per item of ``function``, or None if it never ran in a chunk."""
    found = await core.call(lambda s: s.batches.item_seconds(tenant, function))
    return None if found is None else max(found[0], 0.0)


async def choose_sizes(
    core: ClientCore,
    function: str,
    *,
    n_items: int,
    queue: str,
    tenant: str,
    target: float,
    probe: Callable[[int], Awaitable[None]],
    probe_started: Callable[[], Awaitable[bool]],
) -> list[int]:
    """The chunk sizes of an auto batch, the probe's single-item chunks first if one was needed.

    ``probe(k)`` writes the batch's first ``k`` items as single-item jobs; ``probe_started()``
    tells whether any of them has started. The probe waits for a measurement at most
    ``2 * target`` seconds (at least 0.5 s) after a probe job started: an item slower than that
    runs alone in its job anyway.
    """
    workers = await live_workers(core, queue)
    w = workers or DEFAULT_WORKERS
    if n_items <= SINGLES_PER_WORKER * w:
        return [1] * n_items
    per_item = await measured(core, tenant, function)
    if per_item is not None:
        return plan_sizes(n_items, per_item=per_item, workers=w, target=target)
    if not workers:  # nobody to measure with now: a plan that suits most functions
        return unknown_sizes(n_items, workers=w)
    k = w
    await probe(k)  # only without any record: the first record to appear is the probe's
    patience = max(0.5, 2 * target)
    deadline = time.monotonic() + patience
    started_at: float | None = None
    while True:
        per_item = await measured(core, tenant, function)
        if per_item is not None:
            return [1] * k + plan_sizes(n_items - k, per_item=per_item, workers=w, target=target)
        now = time.monotonic()
        if started_at is None and await probe_started():
            started_at = now
            deadline = now + patience
        if now >= deadline:
            break
        await asyncio.sleep(PROBE_POLL)
    if started_at is not None:  # a single item takes longer than the patience: one item per job
        return [1] * n_items
    return [1] * k + unknown_sizes(n_items - k, workers=w)
