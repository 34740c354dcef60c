"""A job that reports its worker process's garbage-collector state (tests/test_worker_gc.py)."""

from __future__ import annotations

import gc

import taskq_sdk


@taskq_sdk.job
def gc_frozen_objects() -> int:
    """How many objects the worker process froze out of the collector's passes."""
    return gc.get_freeze_count()
