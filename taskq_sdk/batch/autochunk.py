"""``chunk_size="auto"``: chunk sizes chosen from measured item times, so each job runs about
``TASKQ_TARGET_CHUNK_SECONDS`` and the workers finish together.

The time an item takes comes from a probe: one single-item job per live worker, written as the
batch's first chunks (so no worker waits for it); the chunk runner records seconds per item after
every chunk, and that history stands in when the probe cannot run (no live worker, or none
free). Later chunks aim at the target duration, and the last ones shrink (guided self-scheduling:
never more than a share of what is left per worker) so no worker idles while another finishes a
big chunk::

    # not run: internal, what client.map(chunk_size="auto") calls with its probe callbacks
    plan_sizes(400, per_item=0.005, workers=2, target=0.2)   # [40, 40, ..., 30, 23, 17, 13, ...]
    sizes = await choose_sizes(core, "score", n_items=400, queue="default", tenant="default", target=0.2, **probes)
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from .._chunks import RUNNER_NAME
from .._core import LIVE_WORKER_SECONDS
from ..errors import TaskqError

if TYPE_CHECKING:
    from .._core import ClientCore

__all__ = ["MAX_AUTO_CHUNK", "SINGLES_PER_WORKER", "choose_sizes", "plan_rest", "plan_sizes", "unknown_sizes"]

#: batches of at most this many items per worker run one item per job: nothing to measure or gain
SINGLES_PER_WORKER = 4
#: no auto chunk holds more items than this (keeps each job's payload and result moderate)
MAX_AUTO_CHUNK = 20_000
#: without any measurement, aim at this many jobs per worker
UNKNOWN_JOBS_PER_WORKER = 16
#: live workers assumed when none could be counted
DEFAULT_WORKERS = 2
#: seconds a big batch waits for its probe's measurement once a probe job started
LONG_PATIENCE = 10.0
#: seconds between looks at the probe's measurement when no event wakes the wait sooner (pub/sub
#: loses messages while its connection reconnects)
PROBE_RECHECK = 0.25
PROBE_POLL = 0.01  # seconds between looks without ``news`` (polling)


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
        and now - w.last_seen.timestamp() < LIVE_WORKER_SECONDS
    )


async def measured(core: ClientCore, tenant: str, function: str) -> tuple[float, int, int] | None:
    """The last measured seconds per item of ``function``, when (ms) and over how many items; None if never."""
    found = await core.call(lambda s: s.batches.item_seconds(tenant, function))
    return None if found is None else (max(found[0], 0.0), found[1], found[2])


async def plan_rest(
    core: ClientCore, function: str, *, n_items: int, queue: str, tenant: str, target: float
) -> list[int]:
    """Chunk sizes for items appended to a keyed batch: from the function's history, without a probe.

    Example::

        # not run: internal, what appending to a keyed batch calls
        sizes = old.sizes() + await plan_rest(core, "score", n_items=500, queue="default", tenant="t", target=0.2)
    """
    workers = await live_workers(core, queue) or DEFAULT_WORKERS
    history = await measured(core, tenant, function)
    if history is None:
        return unknown_sizes(n_items, workers=workers)
    return plan_sizes(n_items, per_item=history[0], workers=workers, target=target)


async def choose_sizes(
    core: ClientCore,
    function: str,
    *,
    n_items: int,
    queue: str,
    tenant: str,
    target: float,
    probe: Callable[[list[int]], Awaitable[None]],
    probe_started: Callable[[], Awaitable[bool]],
    deferred: bool = False,
    news: Callable[[float], Awaitable[None]] | None = None,
) -> list[int]:
    """The chunk sizes of an auto batch, the probe's single-item chunks first if it ran.

    ``probe(sizes)`` writes the batch's next chunks with these sizes (first one single item per
    worker; for fast items a second, bigger round); ``probe_started()`` tells whether any has
    started; ``news(timeout)`` returns once a probe job started or finished (the batch's events),
    or after ``timeout`` - between looks the wait costs no round trips. The probe waits for a measurement at most
    ``5 * target`` seconds (at least 1 s; 10 s for batches of more than 16 items per worker) after
    a probe job started: an item slower than that runs alone in its job anyway. A deferred batch
    is not probed (its jobs could not start yet).
    """
    workers = await live_workers(core, queue)
    w = workers or DEFAULT_WORKERS
    if n_items <= SINGLES_PER_WORKER * w:
        return [1] * n_items
    history = await measured(core, tenant, function)
    if not workers or deferred:  # nobody to measure with now: the history, else a plan that suits most
        if history is not None:
            return plan_sizes(n_items, per_item=history[0], workers=w, target=target)
        return unknown_sizes(n_items, workers=w)
    # a probe even with a history: the same function may take much longer on other inputs
    probes: list[int] = [1] * w
    await probe(probes)
    patience = max(1.0, 5 * target)
    deadline = time.monotonic() + patience
    started_at: float | None = None
    last = history
    while True:
        found = await measured(core, tenant, function)
        if found is not None and found != last and (len(probes) == w or found[2] > 1):
            last = found  # (after the second probe: only a measurement of more than one item)
            left = n_items - sum(probes)
            # one item's time is noisy (first calls, a busy machine): fast items get a second probe
            # of ~target/10 worth of items per worker, whose average decides
            second = min(round(target / 10 / found[0]) if found[0] > 0 else MAX_AUTO_CHUNK, MAX_AUTO_CHUNK)
            if len(probes) == w and second >= 8 and left > 8 * second * w:
                probes += [second] * w
                await probe([second] * w)
                deadline = time.monotonic() + patience
                continue
            return probes + plan_sizes(left, per_item=found[0], workers=w, target=target)
        now = time.monotonic()
        if started_at is None and await probe_started():
            started_at = now
            # a worker's first call may load the function first: before many single-item jobs are
            # chosen for want of a measurement, wait longer (the workers are busy with the probe)
            deadline = now + (max(patience, LONG_PATIENCE) if n_items > 16 * w else patience)
        if now >= deadline:
            break
        wait = min(deadline - now, PROBE_RECHECK)
        await (news(wait) if news is not None else asyncio.sleep(min(wait, PROBE_POLL)))
    left = n_items - sum(probes)
    if last is not None and last != history:  # the second probe is late: plan with the first
        return probes + plan_sizes(left, per_item=last[0], workers=w, target=target)
    if started_at is not None:  # a single item takes longer than the patience: one item per job
        return probes + [1] * left
    if history is not None:  # the probe did not start (busy workers): trust the history
        return probes + plan_sizes(left, per_item=history[0], workers=w, target=target)
    return probes + unknown_sizes(left, workers=w)
