"""The `taskq` command against a real server: each subcommand, --json output, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from taskq_sdk import Client
from taskq_sdk.config import Settings

from .conftest import ROOT


def taskq(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ARQ_", "TASKQ_"))}
    env["REDIS_URL"] = redis_url
    return subprocess.run(
        [sys.executable, "-m", "taskq_sdk.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_help_lists_subcommands(redis_url: str) -> None:
    out = taskq(redis_url, "--help")
    assert out.returncode == 0
    for sub in ("worker", "local", "status", "cancel", "retry", "jobs", "workers", "metrics", "health"):
        assert sub in out.stdout


def test_status_cancel_retry_jobs_workers(settings: Settings, redis_url: str, worker: Any) -> None:
    with Client(settings=settings) as client:
        done = client.submit("add", 1, 2)
        done.result(timeout=10)
        failed = client.submit("boom", 1)
        failed.exception(timeout=10)
        waiting = client.submit("add", 5, 5, _defer_by=60)

    out = taskq(redis_url, "status", done.id, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "complete"
    assert taskq(redis_url, "status", failed.id).returncode == 1
    assert taskq(redis_url, "status", "nope").returncode == 4

    assert taskq(redis_url, "cancel", waiting.id).returncode == 0
    assert taskq(redis_url, "cancel", waiting.id).returncode == 1

    out = taskq(redis_url, "retry", failed.id, "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["new_job_id"] != failed.id

    out = taskq(redis_url, "jobs", "--json")
    assert {done.id, failed.id, waiting.id} <= {j["id"] for j in json.loads(out.stdout)}
    out = taskq(redis_url, "workers")
    assert out.returncode == 0 and "running" in out.stdout
    out = taskq(redis_url, "metrics", "--window", "600")
    assert out.returncode == 0 and "TOTAL" in out.stdout and "queue depth" in out.stdout
    out = taskq(redis_url, "metrics", "--json")
    assert json.loads(out.stdout)["totals"]["complete"] >= 1
    out = taskq(redis_url, "health", "--refresh", "--json")
    assert out.returncode in (0, 1), out.stderr
    health = json.loads(out.stdout)
    assert health["status"] in ("ok", "degraded") and health["live_workers"] == 1, health["workers"]


def test_unreachable_server_exit_code() -> None:
    out = taskq("redis://127.0.0.1:1/0", "jobs")
    assert out.returncode == 3 and "Could not reach" in out.stderr


def test_taskq_worker_serves_in_burst_mode(settings: Settings, redis_url: str) -> None:
    with Client(settings=settings) as client:
        job = client.submit("add", 20, 22)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ARQ_", "TASKQ_"))}
        env.update({"REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)})
        out = subprocess.run(
            [sys.executable, "-m", "taskq_sdk.cli", "worker", "tests.jobfns", "--burst"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        assert job.result(timeout=5) == 42


def test_taskq_local_runs_a_server_and_workers_until_ctrl_c(tmp_path: Any) -> None:
    import signal

    from .conftest import wait_until

    url_file = tmp_path / "url"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ARQ_", "TASKQ_"))}
    env["PYTHONPATH"] = str(ROOT)
    env["XDG_RUNTIME_DIR"] = str(tmp_path)  # its per-user state file: never the developer's own
    proc = subprocess.Popen(
        [sys.executable, "-m", "taskq_sdk.cli", "local", "tests.jobfns", "--url-file", str(url_file)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(url_file.exists, timeout=60, what="taskq local wrote its URL")
        url = url_file.read_text()
        with Client(url) as client:
            assert client.submit("add", 1, 2).result(timeout=30) == 3
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert "stopped" in out
        password = url.split("@")[0].rsplit(":", 1)[-1]
        assert password not in out, "the password never reaches the terminal"
        assert str(url_file) in out
    finally:
        if proc.poll() is None:
            proc.kill()
