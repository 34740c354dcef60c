"""``python -m taskq_sdk.worker`` keeps what its start-up built out of the collector's full passes.

A full pass over a started worker's ~50,000 objects took ~14 ms (in the middle of whatever job ran);
after ``gc.freeze()`` it takes ~0.2 ms. An in-process worker (a thread of the user's process) does not
freeze: the user's objects are not the worker's to keep.
"""

from __future__ import annotations

import gc
from typing import Any

from taskq_sdk import Client
from taskq_sdk.config import Settings


def test_a_worker_process_freezes_its_start_up_objects(settings: Settings, start_worker_process: Any) -> None:
    start_worker_process(modules=("tests.gc_jobs",))
    with Client(settings=settings) as client:
        assert client.submit("gc_frozen_objects").result(timeout=30) > 10_000


def test_an_in_process_worker_leaves_the_process_collector_alone(settings: Settings, worker: Any) -> None:
    with Client(settings=settings) as client:
        assert client.submit("double", 2).result(timeout=30) == 4
    assert gc.get_freeze_count() == 0
