"""Blocking reads and writes a :class:`~taskq_sdk.LocalCluster` makes on its own server, from any thread.

The cluster lives in the user's thread (a notebook cell), with no event loop of its own, so these
use a short-lived blocking connection::

    pids = live_worker_pids(url)                      # {4242, 4243}: workers that say they are running
    announce_names(url, "default", ["score"])         # submit() now accepts "score"
    workers, depth = cluster_view(url, "default")
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis

from . import layout

__all__ = ["announce_names", "cluster_view", "live_worker_pids"]


@contextmanager
def _connection(url: str, timeout: float) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        yield client
    finally:
        client.close()


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def live_worker_pids(url: str, *, timeout: float = 5.0) -> set[int]:
    """PIDs of the workers whose liveness record says they are running."""
    with _connection(url, timeout) as r:
        ids = [_text(x) for x in r.zrange(layout.WORKERS_ZSET, 0, -1)]  # type: ignore[union-attr]
        pipe = r.pipeline(transaction=False)
        for wid in ids:
            pipe.hmget(layout.worker_key(wid), ["pid", "status"])
        rows = pipe.execute()
    return {int(pid) for pid, status in rows if pid and status == b"running"}


def announce_names(url: str, queue: str, names: Sequence[str], *, timeout: float = 5.0) -> None:
    """Add ``names`` to the queue's registry of served functions (what ``submit`` checks names against)."""
    key = layout.registry_key(queue)
    with _connection(url, timeout) as r:
        r.hset(key, mapping=dict.fromkeys(names, int(time.time() * 1000)))
        r.pexpire(key, layout.REGISTRY_TTL_MS)


def cluster_view(url: str, queue: str, *, timeout: float = 2.0) -> tuple[list[dict[str, str]], int]:
    """Every worker's liveness record (with its ``id``) and the queue's depth, in one round trip."""
    with _connection(url, timeout) as r:
        ids = [_text(x) for x in r.zrange(layout.WORKERS_ZSET, 0, -1)]  # type: ignore[union-attr]
        pipe = r.pipeline(transaction=False)
        for wid in ids:
            pipe.hgetall(layout.worker_key(wid))
        pipe.zcard(layout.queue_key(queue))
        *rows, depth = pipe.execute()
    workers = []
    for wid, row in zip(ids, rows, strict=True):
        record = {_text(k): _text(v) for k, v in row.items()}
        if record:
            workers.append({"id": wid, **record})
    return workers, int(depth)
