"""Real worker subprocesses: the seed's command, env configuration, draining, crash recovery, liveness."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
import redis

from taskq_sdk import Client, JobStatus
from taskq_sdk.config import Settings

from .conftest import ROOT, figure, wait_until


def test_python_m_worker_help_teaches() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "taskq_sdk.worker", "--help"], capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    assert out.returncode == 0
    assert "ARQ_MAX_JOBS" in out.stdout and "--queue" in out.stdout and "Examples" in out.stdout


def test_worker_configured_by_environment(settings: Settings, start_worker_process: Any) -> None:
    w = start_worker_process(env={"ARQ_MAX_JOBS": "20"})
    with Client(settings=settings) as client:
        assert client.submit("add", 1, 2).result(timeout=10) == 3
        mine = [x for x in client.workers() if x.pid == w.pid]
        assert len(mine) == 1 and mine[0].max_jobs == 20 and mine[0].status == "running"
        assert "add" in mine[0].functions and "process_video_async" in mine[0].functions


def test_sigterm_drains_running_jobs(settings: Settings, start_worker_process: Any) -> None:
    w = start_worker_process()
    with Client(settings=settings) as client:
        job = client.submit("sleeper", 1.0)
        wait_until(lambda: job.status() is JobStatus.in_progress, what="job running")
        os.kill(w.pid, signal.SIGTERM)
        assert job.result(timeout=15) == 1.0, "the running job finished during the drain"
        try:
            code = w.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(w.pid, signal.SIGUSR1)  # dump the stuck worker's stacks into its log
            time.sleep(0.5)
            raise AssertionError(f"worker did not exit after draining:\n{w.log_tail(120)}") from None
        assert code == 0
        stopped = [x for x in client.workers() if x.pid == w.pid]
        assert stopped and stopped[0].status == "stopped"


def test_runaway_sync_job_does_not_keep_a_stopped_worker_alive(settings: Settings, start_worker_process: Any) -> None:
    w = start_worker_process()
    with Client(settings=settings) as client:
        job = client.submit("sync_sleeper", 120.0, _timeout=1, _retries=1)
        wait_until(lambda: job.status() is JobStatus.failed, timeout=20, what="the job timed out")
        os.kill(w.pid, signal.SIGTERM)
        try:
            code = w.proc.wait(20)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"a thread stuck in a sync job kept the worker alive:\n{w.log_tail(60)}") from None
        assert code == 0
        assert "job threads still running" in w.log_tail(60)


def test_sigkilled_worker_job_completes_elsewhere(
    settings: Settings, start_worker_process: Any, sync_redis: redis.Redis
) -> None:
    first = start_worker_process()
    with Client(settings=settings) as client:
        job = client.submit("record_pid", "pids:1", 0.5, _timeout=20)
        holder = wait_until(lambda: sync_redis.lindex("pids:1", 0), what="the job wrote its pid")
        pid = int(holder.decode().split(":")[0])
        assert pid == first.pid, "the job provably runs on the first worker"
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        start_worker_process()
        assert job.result(timeout=30) != pid
        recovery = time.monotonic() - killed_at
        figure("sigkill_recovery_seconds", round(recovery, 2))
        assert job.info().attempts == 2
        assert recovery < settings.claim_ttl + 10


def test_dead_worker_disappears_from_listing(settings: Settings, start_worker_process: Any) -> None:
    w = start_worker_process()
    with Client(settings=settings) as client:
        assert any(x.pid == w.pid for x in client.workers())
        t0 = time.monotonic()
        w.proc.kill()
        w.proc.wait(5)
        wait_until(lambda: not any(x.pid == w.pid for x in client.workers()), timeout=10, what="dead worker gone")
        figure("dead_worker_unlisted_seconds", round(time.monotonic() - t0, 2))


def test_get_worker_stats_from_the_server(settings: Settings, start_worker_process: Any, monkeypatch: Any) -> None:
    from taskq_sdk import worker

    start_worker_process()
    stats = worker.get_worker_stats(settings)
    assert stats["status"] == "running"
    assert stats["max_jobs"] >= 10
    for key in ("jobs_complete", "jobs_failed", "jobs_retried", "jobs_ongoing", "uptime"):
        assert key in stats


@pytest.mark.chaos
def test_job_that_kills_its_worker_every_time_fails_clearly(
    settings: Settings, start_worker_process: Any, sync_redis: redis.Redis
) -> None:
    procs = [start_worker_process()]
    with Client(settings=settings) as client:
        job = client.submit("record_pid", "pids:2", 30, _retries=2, _timeout=60)
        killed = 0
        while killed < 2:
            entry = wait_until(lambda k=killed: sync_redis.lindex("pids:2", k), timeout=30, what="attempt started")
            pid = int(entry.decode().split(":")[0])
            os.kill(pid, signal.SIGKILL)
            killed += 1
            procs.append(start_worker_process())
        from taskq_sdk import JobFailed

        with pytest.raises(JobFailed) as info:
            job.result(timeout=30)
        assert info.value.remote_type == "AttemptsExhausted"
        assert client.submit("add", 1, 1).result(timeout=10) == 2, "other jobs keep flowing"
