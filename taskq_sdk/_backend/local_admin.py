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

import redis

from . import layout, liveness

__all__ = ["announce_names", "cluster_view", "live_worker_pids"]


@contextmanager
def _connection(url: str, timeout: float) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        yield client
    finally:
        client.close()


Records = list[tuple[str, dict[str, str]]]


def _records(r: redis.Redis, depth_of: str | None = None) -> tuple[Records, int]:
    """Every worker's liveness record (junk skipped, see :mod:`.liveness`), and the depth of queue key ``depth_of``."""
    try:
        ids = liveness.member_ids(r.zrange(layout.WORKERS_ZSET, 0, -1))  # type: ignore[arg-type]
    except redis.ResponseError as exc:
        if not liveness.is_wrong_type(exc):
            raise
        liveness.note_junk("the worker set is not a sorted set", exc)
        ids = []
    pipe = r.pipeline(transaction=False)
    for wid in ids:
        pipe.hgetall(layout.worker_key(wid))
    if depth_of is not None:
        pipe.zcard(depth_of)
    answers = pipe.execute(raise_on_error=False)
    depth = answers.pop() if depth_of is not None else 0
    if isinstance(depth, BaseException):
        raise depth
    rows = [(wid, liveness.record(row)) for wid, row in zip(ids, answers, strict=True)]
    return [(wid, d) for wid, d in rows if d], int(depth)


def live_worker_pids(url: str, *, timeout: float = 5.0) -> set[int]:
    """PIDs of the workers whose liveness record says they are running."""
    with _connection(url, timeout) as r:
        rows, _ = _records(r)
    out = set()
    for wid, d in rows:
        info = liveness.worker_info(wid, d)
        if info is not None and info.pid > 0 and d.get("status") == "running":
            out.add(info.pid)
    return out


def announce_names(url: str, queue: str, names: Sequence[str], *, timeout: float = 5.0) -> None:
    """Add ``names`` to the queue's registry of served functions (what ``submit`` checks names against)."""
    key = layout.registry_key(queue)
    with _connection(url, timeout) as r:
        r.hset(key, mapping=dict.fromkeys(names, int(time.time() * 1000)))
        r.pexpire(key, layout.REGISTRY_TTL_MS)


def cluster_view(url: str, queue: str, *, timeout: float = 2.0) -> tuple[list[dict[str, str]], int]:
    """Every worker's liveness record (with its ``id``) and the queue's depth, in one round trip."""
    with _connection(url, timeout) as r:
        rows, depth = _records(r, layout.queue_key(queue))
    return [{"id": wid, **d} for wid, d in rows], depth
