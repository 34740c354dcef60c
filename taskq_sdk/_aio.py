"""Small asyncio helpers shared by the engine, its extensions and the clients.

Example::

    await stop_tasks([heartbeat_task, listener_task], timeout=5)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

__all__ = ["close_loop", "stop_tasks"]

logger = logging.getLogger("taskq_sdk")


async def stop_tasks(tasks: Sequence[asyncio.Task[Any] | asyncio.Future[Any]], timeout: float = 5.0) -> None:
    """Cancel background tasks and wait for them - but never forever.

    Python 3.11 can turn a cancellation that races with an ``asyncio.timeout`` (redis-py's socket
    timeouts use one) into a ``TimeoutError``, which a retrying loop then swallows and carries on.
    Loops should also check a stop flag; this wait is bounded so that shutdown always completes.

    Example::

        await stop_tasks([task], timeout=2)
    """
    live = [t for t in tasks if t is not None]
    for t in live:
        t.cancel()
    if not live:
        return
    _, pending = await asyncio.wait(live, timeout=timeout)
    for t in pending:
        name = t.get_name() if isinstance(t, asyncio.Task) else repr(t)
        logger.warning("background task %s did not stop on cancel within %gs; leaving it", name, timeout)


def close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Close a loop the way ``asyncio.run`` does, but bounded: stop what is left, then close.

    A task left pending on a closed loop is finalised later by the garbage collector, at a random point
    in some other code (on CPython 3.11 even inside ``ast.parse``, which then fails with a SystemError).

    Example::

        try:
            loop.run_until_complete(main())
        finally:
            close_loop(loop)
    """
    try:
        leftover = [t for t in asyncio.all_tasks(loop) if not t.done()]
        if leftover:
            loop.run_until_complete(stop_tasks(leftover, timeout=5.0))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
