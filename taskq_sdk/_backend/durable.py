"""Durable submits: the submit and a ``WAIT`` for a replica's acknowledgement, on one connection.

Redis replicates asynchronously: a primary acknowledges a write before any replica has it, so a
submit acknowledged just before the primary dies can vanish in the failover. ``WAIT n timeout``
blocks the connection that wrote until ``n`` replicas acknowledge everything it wrote, so it must
follow the write in the same pipeline (one connection) - a ``WAIT`` on another pooled connection
would say nothing about this write.

What it guarantees, honestly: the jobs reached a replica's memory before the submit returned. It
is not strong consistency: the replica that acknowledged might not be the one promoted (with two
or more replicas), a replica restarted without persistence forgets, and a failover can still pick
a replica that lags. With one replica, or when the promoted replica is the one that acknowledged,
an acknowledged durable submit survives the primary's SIGKILL. One more gap: if the connection drops
after the script ran but before ``WAIT`` answered, redis-py runs the pipeline again on a new
connection; the script then finds the job written and writes nothing, so that ``WAIT`` covers
nothing and confirms at once. Example::

    async with redis.pipeline(transaction=False) as pipe:
        await submit_script(keys=[], args=argv, client=pipe)
        add_wait(pipe, settings)
        out, acked = await pipe.execute()
    check_acked(acked, job_ids, settings)      # DurabilityUnconfirmed when no replica confirmed
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..config import Settings
from ..errors import DurabilityUnconfirmed

__all__ = ["DURABLE_REPLICAS", "add_wait", "check_acked", "durable_timeout_ms"]

#: replicas that must confirm a durable write (the usual Sentinel deployment has one or two)
DURABLE_REPLICAS = 1


def durable_timeout_ms(settings: Settings) -> int:
    """``TASKQ_DURABLE_TIMEOUT`` in milliseconds, at least 1 (``WAIT 1 0`` would block forever).

    Capped at 0.9 x ``TASKQ_SOCKET_TIMEOUT``: a longer ``WAIT`` would look like a hung server.

    Example::

        durable_timeout_ms(Settings(durable_timeout=10, socket_timeout=5))   # 4500
    """
    return max(1, int(min(settings.durable_timeout, 0.9 * settings.socket_timeout) * 1000))


def add_wait(pipe: Any, timeout_ms: int) -> None:
    """Queue ``WAIT DURABLE_REPLICAS timeout_ms`` on ``pipe``, after the writes it must cover."""
    pipe.execute_command("WAIT", DURABLE_REPLICAS, timeout_ms)


def check_acked(acked: Any, job_ids: Sequence[str], timeout_ms: int, what: str = "") -> None:
    """Raise :class:`DurabilityUnconfirmed` unless ``acked`` (WAIT's reply) reaches ``DURABLE_REPLICAS``."""
    count = int(acked)
    if count < DURABLE_REPLICAS:
        raise DurabilityUnconfirmed(list(job_ids), count, DURABLE_REPLICAS, timeout_ms / 1000, what)
