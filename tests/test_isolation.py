"""Jobs marked isolate=True run in a killable process: on timeout or cancel the work really stops."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from taskq_sdk import Client, JobCancelled, JobFailed, JobStatus, JobTimedOut
from taskq_sdk.config import Settings

from .conftest import pid_alive, wait_until


def _spinner_pid(path: Path) -> int:
    """The PID the spinner wrote, or 0 while the file is missing or caught mid-rewrite."""
    try:
        fields = path.read_text().split()
    except FileNotFoundError:
        return 0
    return int(fields[0]) if fields and fields[0].isdigit() else 0


def test_isolated_job_runs_in_its_own_process(settings: Settings, worker: Any, tmp_path: Path) -> None:
    with Client(settings=settings) as client:
        job = client.submit("isolated_spin", str(tmp_path / "beat"), 0.3)
        pid = job.result(timeout=60)
        assert pid != os.getpid()
        assert job.progress().fraction is not None
        with pytest.raises(JobFailed) as info:
            client.submit("isolated_boom").result(timeout=60)
        assert info.value.remote_type == "ValueError"
        assert "isolated failure" in info.value.remote_message
        assert "jobfns.py" in info.value.remote_traceback


def test_timeout_kills_the_process(settings: Settings, worker: Any, tmp_path: Path) -> None:
    beat = tmp_path / "beat"
    with Client(settings=settings) as client:
        job = client.submit("isolated_spin", str(beat), 60, _timeout=8)
        # the spawned process starts in ~0.5 s here, longer under load: see it working first
        wait_until(lambda: _spinner_pid(beat), timeout=30, what="the isolated process started")
        pid = _spinner_pid(beat)
        with pytest.raises(JobTimedOut) as info:
            job.result(timeout=60)
        assert "process was killed" in str(info.value)
        wait_until(lambda: not pid_alive(pid), timeout=10, what="the isolated process is gone")


def test_cancel_kills_the_process(settings: Settings, worker: Any, tmp_path: Path) -> None:
    beat = tmp_path / "beat"
    with Client(settings=settings) as client:
        job = client.submit("isolated_spin", str(beat), 60)
        wait_until(lambda: _spinner_pid(beat), timeout=30, what="the isolated process started")
        pid = _spinner_pid(beat)
        assert job.cancel()
        with pytest.raises(JobCancelled):
            job.result(timeout=10)
        assert job.status() is JobStatus.cancelled
        wait_until(lambda: not pid_alive(pid), timeout=10, what="the isolated process is gone")


def test_isolated_sync_job_reports_progress_while_it_runs(settings: Settings, worker: Any, tmp_path: Path) -> None:
    with Client(settings=settings) as client:
        job = client.submit("isolated_spin", str(tmp_path / "beat"), 3)
        seen = wait_until(
            lambda: (p := job.progress()).fraction and p.fraction < 1 and p, timeout=30, what="live progress"
        )
        assert seen.message and seen.message.startswith("tick")
        assert job.result(timeout=60)


def test_isolated_process_dies_with_its_worker(settings: Settings, start_worker_process: Any, tmp_path: Path) -> None:
    import signal

    beat = tmp_path / "beat"
    w = start_worker_process()
    with Client(settings=settings) as client:
        client.submit("isolated_spin", str(beat), 60)
        wait_until(lambda: _spinner_pid(beat), timeout=30, what="the isolated process started")
        pid = _spinner_pid(beat)
        os.kill(w.pid, signal.SIGKILL)
        wait_until(lambda: not pid_alive(pid), timeout=10, what="the isolated process died with its worker")
