"""Cron schedules run by the workers: the parser, and one job per slot however many workers run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest
import redis

from taskq_sdk.config import Settings
from taskq_sdk.errors import ConfigurationError
from taskq_sdk.jobs.monitoring import HISTORY_KEY
from taskq_sdk.scheduler import (
    CronSchedule,
    Schedule,
    builtin_schedules,
    register_schedule,
    unregister_schedule,
)

from .conftest import figure, wait_until

T0 = datetime(2026, 1, 1, 12, 3, 30, tzinfo=UTC)  # a Thursday


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("*/5 * * * *", T0, datetime(2026, 1, 1, 12, 5, tzinfo=UTC)),
        ("*/10 * * * * *", T0, datetime(2026, 1, 1, 12, 3, 40, tzinfo=UTC)),
        ("0 3 * * mon-fri", T0, datetime(2026, 1, 2, 3, 0, tzinfo=UTC)),
        ("0 0 * * sat,sun", T0, datetime(2026, 1, 3, 0, 0, tzinfo=UTC)),
        ("0 0 13 * 5", T0, datetime(2026, 1, 2, 0, 0, tzinfo=UTC)),  # day 13 OR Friday, like cron
        ("30 2 29 feb *", T0, datetime(2028, 2, 29, 2, 30, tzinfo=UTC)),
        ("@hourly", T0, datetime(2026, 1, 1, 13, 0, tzinfo=UTC)),
        ("0 0 * * 7", T0, datetime(2026, 1, 4, 0, 0, tzinfo=UTC)),  # 7 is Sunday too
        ("15-45/15 * * * *", T0, datetime(2026, 1, 1, 12, 15, tzinfo=UTC)),
        ("59 23 31 12 *", datetime(2026, 12, 31, 23, 59, tzinfo=UTC), datetime(2027, 12, 31, 23, 59, tzinfo=UTC)),
    ],
)
def test_cron_next_after(expr: str, after: datetime, expected: datetime) -> None:
    assert CronSchedule(expr).next_after(after) == expected


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("* * *", "has 3 fields"),
        ("61 * * * *", "out of range"),
        ("0 0 30 2 *", "never fires"),
        ("a b c d e", "not a valid minute"),
        ("*/0 * * * *", "at least 1"),
        ("", "non-empty"),
    ],
)
def test_cron_rejects_bad_expressions(expr: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        CronSchedule(expr)


def test_builtin_schedule_follows_settings() -> None:
    (mon,) = builtin_schedules(Settings(redis_url=None))
    assert (mon.name, mon.cron, mon.function) == ("monitoring", "*/5 * * * *", "scheduled_monitoring_async")
    assert mon.job_id(datetime(2026, 1, 1, 12, 5, tzinfo=UTC)) == "monitoring-20260101T120500Z"
    assert builtin_schedules(Settings(redis_url=None, monitoring_cron="off")) == []
    with pytest.raises(ConfigurationError):
        builtin_schedules(Settings(redis_url=None, monitoring_cron="every five minutes"))


@pytest.fixture
def every_second_schedule() -> Iterator[Schedule]:
    schedule = register_schedule(
        Schedule(name="test-every-second", cron="* * * * * *", function="record_job_id", kwargs={"key": "sched:runs"})
    )
    yield schedule
    unregister_schedule(schedule.name)


def test_three_in_process_workers_submit_each_slot_once(
    every_second_schedule: Schedule, start_worker: Any, sync_redis: redis.Redis
) -> None:
    workers = [start_worker(keep_result=0) for _ in range(3)]  # no result key: only the claim dedupes
    wait_until(lambda: sync_redis.llen("sched:runs") >= 5, timeout=30, what="five scheduled runs")
    with sync_redis.pipeline(transaction=True) as pipe:  # consistent view: SUBMIT writes both atomically
        pipe.hget("taskq:t:default:m:all", "default|record_job_id|enq")
        pipe.zrange("taskq:t:default:idx:default", 0, -1)
        pipe.lrange("sched:runs", 0, -1)
        enq_raw, created_raw, runs_raw = pipe.execute()
    runs = [x.decode() for x in runs_raw]
    created = sorted(x.decode() for x in created_raw)
    assert len(runs) == len(set(runs)), f"a slot ran twice: {runs}"
    assert int(enq_raw) == len(created), "no slot id was created twice"
    assert set(runs) <= set(created) and all(c.startswith("test-every-second-") for c in created)
    slots = [datetime.strptime(c.rsplit("-", 1)[1], "%Y%m%dT%H%M%SZ") for c in created]
    assert all(b - a == timedelta(seconds=1) for a, b in pairwise(slots)), created
    submitted = [len(w.engine.extensions[-1].submitted) for w in workers if w.engine is not None]
    figure("scheduler_slots_submitted_per_worker", "/".join(map(str, submitted)))
    assert sum(submitted) >= len(created) - 1  # (one may be in flight between claim and submit)


def test_monitoring_runs_on_schedule_once_per_slot_with_two_worker_processes(
    start_worker_process: Any, sync_redis: redis.Redis
) -> None:
    env = {"TASKQ_MONITORING_CRON": "* * * * * *", "TASKQ_KEEP_RESULT": "0"}
    start_worker_process(env=env)
    start_worker_process(env=env)
    wait_until(lambda: sync_redis.llen(HISTORY_KEY) >= 4, timeout=30, what="four monitoring snapshots")
    with sync_redis.pipeline(transaction=True) as pipe:  # consistent view: SUBMIT writes both atomically
        pipe.hget("taskq:t:default:m:all", "taskq-system|scheduled_monitoring_async|enq")
        pipe.zrange("taskq:t:default:idx:taskq-system", 0, -1)
        pipe.lrange(HISTORY_KEY, 0, -1)
        enq_raw, created_raw, history_raw = pipe.execute()
    created = sorted(x.decode() for x in created_raw)
    history = [json.loads(x) for x in history_raw]
    ids = [h["job_id"] for h in history]
    assert len(ids) == len(set(ids)), f"a monitoring slot ran twice: {ids}"
    assert int(enq_raw) == len(created), "one job per slot: no slot id was created twice"
    assert set(ids) <= set(created)
    assert all(i.startswith("monitoring-") for i in created)
    slots = [datetime.strptime(i.split("-", 1)[1], "%Y%m%dT%H%M%SZ") for i in created]
    # one job per one-second slot; under load a slot can be missed (never back-filled), never doubled
    assert all(b - a >= timedelta(seconds=1) for a, b in pairwise(slots)), created
    latest = history[0]
    assert latest["source"] == "scheduled" and latest["live_workers"] == 2 and latest["status"] != "down"
    assert latest["ping_ms"] > 0 and latest["server"]["used_memory"] > 0
    figure("monitoring_ping_ms_min", round(min(float(h.get("ping_ms") or 0) for h in history), 3))


def test_scheduled_decorator_registers_a_job_schedule() -> None:
    from taskq_sdk import job
    from taskq_sdk.scheduler import registered_schedules, scheduled

    @scheduled("0 3 * * *", kwargs={"full": True}, timeout=600)
    @job
    def nightly_report(full: bool = False) -> bool:
        return full

    try:
        (sched,) = [s for s in registered_schedules() if s.name == "nightly-report"]
        assert (sched.function, sched.cron, sched.kwargs, sched.timeout) == (
            "nightly_report",
            "0 3 * * *",
            {"full": True},
            600,
        )
        assert nightly_report(full=True) is True  # still a plain function
        with pytest.raises(ConfigurationError, match="already registered"):
            register_schedule(Schedule(name="nightly-report", cron="0 4 * * *", function="nightly_report"))
    finally:
        assert unregister_schedule("nightly-report")
