"""Fencing: a job never runs twice at once, whatever the server or the worker's process does meanwhile.

Each test job appends one line per tick to a file (its side effect) and checks its claim before
each tick (``report_progress``). A second copy of the job shows as a second name in the file; a
*stale tick* is a line an older copy wrote after a newer copy had started - what fencing prevents.
The faults are real: a server killed for longer than the claim TTL, worker processes frozen with
SIGSTOP (a VM pause, a stuck GC), hand-overs and cancels forged by another client.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis

from taskq_sdk import Client
from taskq_sdk._backend import layout
from taskq_sdk.config import Settings
from taskq_sdk.local import WorkerProcess

from .conftest import FAST, FAST_ENV, JOBS, ROOT, figure, wait_until

pytestmark = pytest.mark.chaos


def ticks_of(path: Path) -> list[str]:
    """The copy name of each tick, in the order the ticks were written."""
    if not path.exists():
        return []
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def stale_ticks(path: Path) -> tuple[int, int]:
    """(copies, stale ticks): ticks an older copy wrote after a newer copy's first tick."""
    names = ticks_of(path)
    first = {}
    for i, name in enumerate(names):
        first.setdefault(name, i)
    stale = sum(1 for i, name in enumerate(names) if any(first[name] < f < i for f in first.values()))
    return len(first), stale


def _env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ARQ_", "TASKQ_"))}
    env.update(FAST_ENV)
    env.update({"REDIS_URL": url, "PYTHONPATH": str(ROOT)})
    return env


def _worker_ids(r: redis.Redis) -> dict[int, str]:
    return {int(w.decode().split(":")[1]): w.decode() for w in r.zrange(layout.WORKERS_ZSET, 0, -1)}


@pytest.fixture
def own_server(tmp_path: Path) -> Any:
    """A server this test may kill and restart (append-only persistence in tmp_path)."""
    from taskq_sdk._server import LocalServer

    srv = LocalServer(persist_dir=tmp_path / "data").start()
    yield srv
    srv.stop()


@pytest.mark.parametrize("function", ["fenced_ticks", "afenced_ticks"])
def test_outage_longer_than_the_claim_ttl_runs_the_job_once(
    own_server: Any, lifeline: Any, tmp_path: Path, function: str
) -> None:
    """After an outage longer than the claim TTL, the worker re-takes its own job instead of starting it again."""
    worker = WorkerProcess(_env(own_server.url), [JOBS], tmp_path / "w.log", lifeline=lifeline).start()
    settings = Settings(redis_url=own_server.url, **FAST)  # type: ignore[arg-type]
    ticks = tmp_path / "ticks"
    try:
        with Client(settings=settings) as client:
            wait_until(lambda: len(client.workers()) == 1, timeout=30, what="worker up")
            job = client.submit(function, str(ticks), 120)  # ~6 s of ticks, plus the outage
            wait_until(lambda: len(ticks_of(ticks)) >= 5, what="job ticking")
            own_server.kill()
            time.sleep(settings.claim_ttl + 2.0)  # the outage itself: longer than the claim TTL
            own_server.start()
            copy = job.result(timeout=60)
            copies, stale = stale_ticks(ticks)
            figure(f"outage_longer_than_claim_ttl_duplicate_executions[{function}]", copies - 1)
            assert worker.is_alive(), worker.log_tail()
            assert copies == 1, f"{copies} copies ran ({stale} stale ticks); result from {copy}\n{worker.log_tail()}"
            assert ticks_of(ticks)[-1] == copy
    finally:
        worker.stop(now=True)


@pytest.mark.parametrize("function", ["fenced_ticks", "afenced_ticks"])
def test_frozen_worker_stops_its_copy_once_it_wakes(
    start_worker_process: Any, sync_redis: redis.Redis, settings: Settings, tmp_path: Path, function: str
) -> None:
    """A worker frozen past its claim TTL loses the job to another worker and, on waking, stops its copy."""
    frozen = start_worker_process()
    ticks = tmp_path / "ticks"
    with Client(settings=settings) as client:
        job = client.submit(function, str(ticks), 200)  # ~10 s of ticks
        wait_until(lambda: len(ticks_of(ticks)) >= 3, what="job ticking on the first worker")
        os.kill(frozen.pid, signal.SIGSTOP)
        try:
            start_worker_process()
            wait_until(lambda: len(set(ticks_of(ticks))) >= 2, timeout=30, what="a second worker took the job")
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
        copy = job.result(timeout=60)
        # the frozen copy had every chance to write: it woke long before the job ended
        copies, stale = stale_ticks(ticks)
        figure(f"frozen_worker_stale_ticks[{function}]", stale)
        assert frozen.is_alive(), frozen.log_tail()
        assert stale == 0, f"the frozen copy wrote {stale} ticks after another worker took the job"
        assert copies == 2 and ticks_of(ticks)[-1] == copy
        wait_until(
            lambda: "claim lost" in frozen.log_tail() or "another worker" in frozen.log_tail(),
            what=f"the frozen worker logged why it stopped its copy:\n{frozen.log_tail()}",
        )


def test_frozen_idle_worker_is_not_handed_jobs(
    start_worker_process: Any, sync_redis: redis.Redis, settings: Settings, tmp_path: Path
) -> None:
    """Hand-overs go to idle workers that refreshed their offer lately; a frozen one never runs the job later."""
    frozen = start_worker_process()
    rk = layout.ready_key("default")
    wait_until(lambda: sync_redis.zcard(rk) == 1, what="the first worker offers to take jobs")
    os.kill(frozen.pid, signal.SIGSTOP)
    ticks = tmp_path / "ticks"
    try:
        live = start_worker_process()
        ids = _worker_ids(sync_redis)
        frozen_id, live_id = ids[frozen.pid], ids[live.pid]

        def live_offer_fresher() -> bool:
            scores = {m.decode().rsplit("|", 1)[-1]: s for m, s in sync_redis.zrange(rk, 0, -1, withscores=True)}
            return live_id in scores and scores[live_id] > scores.get(frozen_id, 0)

        wait_until(live_offer_fresher, what="the live worker's offer is fresher than the frozen one's")
        with Client(settings=settings) as client:
            t0 = time.monotonic()
            job = client.submit("fenced_ticks", str(ticks), 5)
            copy = job.result(timeout=30)
            took = time.monotonic() - t0
        figure("frozen_idle_worker_submit_to_result_seconds", round(took, 2))
        assert copy.split(":")[0] == str(live.pid)
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    # once awake and idle again, the frozen worker has read whatever was handed to it
    thawed = time.time() * 1000
    key = layout.worker_key(frozen_id)
    wait_until(
        lambda: float(sync_redis.hget(key, "seen") or 0) > thawed + 500 and sync_redis.hget(key, "ongoing") == b"0",
        timeout=20,
        what="the thawed worker heart-beating and idle",
    )
    copies, _ = stale_ticks(ticks)
    figure("frozen_idle_worker_duplicate_executions", copies - 1)
    assert copies == 1, f"the job ran {copies} times: {ticks.read_text()}"


def test_forged_handover_and_cancel_are_ignored(
    start_worker_process: Any, sync_redis: redis.Redis, settings: Settings, tmp_path: Path
) -> None:
    """A client that publishes a fake hand-over or cancel on a worker's channels changes nothing."""
    worker = start_worker_process()
    wid = _worker_ids(sync_redis)[worker.pid]
    ticks = tmp_path / "ticks"
    with Client(settings=settings) as client:
        queued = client.submit("fenced_ticks", str(ticks), 3, _defer_by=3600)  # waits in the queue
        running = client.submit("afenced_ticks", str(tmp_path / "running"), 60)
        wait_until(lambda: len(ticks_of(tmp_path / "running")) >= 2, what="running job ticking")
        blob = sync_redis.get(layout.job_key(queued.id))
        entry = f"3000|999|{wid}"
        row = [queued.id, 0, blob, 1, 0, ["", "", "default", "", str(int(time.time() * 1000))], entry]
        heard = sync_redis.publish(layout.push_channel("default", wid), layout.PUSH_MAGIC + msgpack.packb(row))
        assert heard == 1
        forged = sync_redis.publish(layout.control_channel("default"), json.dumps({"e": "cancel", "id": running.id}))
        assert forged >= 1
        # the running job outlives the forged cancel: it ticks on well after it
        n = len(ticks_of(tmp_path / "running"))
        try:
            wait_until(lambda: len(ticks_of(tmp_path / "running")) >= n + 10, what="running job still ticking")
            obeyed = running.status().value != "in_progress"
        except AssertionError:
            obeyed = True
        running.cancel()
        executed = len(ticks_of(ticks))
        figure("forged_handover_executions", executed)
        figure("forged_cancels_obeyed", int(obeyed))
        assert executed == 0, "a forged hand-over ran a job that was not handed over"
        assert not obeyed, "a cancel published by hand stopped a running job"
        assert queued.status().value == "deferred"
