"""The sync client's hand-off into its event loop: results, errors, cancellation and a stop while waiting."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import pytest

from taskq_sdk._portal import Portal
from taskq_sdk.errors import ClientClosed


def test_results_and_errors_cross_the_hand_off() -> None:
    portal = Portal("test-portal")
    try:

        async def add(a: int, b: int) -> int:
            await asyncio.sleep(0)
            return a + b

        async def fails() -> None:
            raise ValueError("bad row 17")

        assert [portal.call(add, i, i) for i in range(100)] == [2 * i for i in range(100)]
        with pytest.raises(ValueError, match="bad row 17"):
            portal.call(fails)
    finally:
        portal.stop()


def test_a_call_cancelled_on_the_loop_raises_cancelled() -> None:
    portal = Portal("test-portal")
    try:

        async def cancelled() -> None:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await asyncio.sleep(1)

        with pytest.raises(concurrent.futures.CancelledError):
            portal.call(cancelled)
    finally:
        portal.stop()


def test_stopping_the_portal_ends_a_waiting_call() -> None:
    portal = Portal("test-portal")
    started = threading.Event()

    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    outcome: list[BaseException] = []

    def blocked() -> None:
        try:
            portal.call(forever)
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=blocked)
    caller.start()
    assert started.wait(10)
    portal.stop()
    caller.join(10)
    assert not caller.is_alive(), "the blocked call did not end when the portal stopped"
    assert len(outcome) == 1 and isinstance(outcome[0], ClientClosed)
    with pytest.raises(ClientClosed):
        portal.call(forever)
