"""taskq and plain arq interoperate: arq clients enqueue into taskq, the stock `arq` worker runs taskq jobs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import pytest
from arq.connections import RedisSettings, create_pool

from taskq_sdk import Client, JobFailed, JobStatus
from taskq_sdk.config import Settings
from taskq_sdk.serialization import Codec

from .conftest import FAST_ENV, ROOT


def enqueue_with_plain_arq(url: str, *args: Any, **kwargs: Any) -> str:
    codec = Codec()

    async def main() -> str:
        pool = await create_pool(
            RedisSettings.from_dsn(url), job_serializer=codec.serializer, job_deserializer=codec.deserializer
        )
        try:
            job = await pool.enqueue_job(*args, **kwargs)
            assert job is not None
            return str(job.job_id)
        finally:
            await pool.aclose()

    return asyncio.run(main())


def test_job_enqueued_by_plain_arq_is_visible_and_runs(settings: Settings, redis_url: str, worker: Any) -> None:
    job_id = enqueue_with_plain_arq(redis_url, "add", 2, 3, _job_id="plain-arq-1")
    with Client(settings=settings) as client:
        job = client.job(job_id)
        assert job.result(timeout=10) == 5
        assert job.status() is JobStatus.complete
        assert job.info().tenant == "default"
    failing = enqueue_with_plain_arq(redis_url, "boom", 9)
    with Client(settings=settings) as client, pytest.raises(JobFailed) as info:
        client.job(failing).result(timeout=10)
    assert info.value.remote_type == "ValueError"


def run_stock_arq(redis_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ARQ_", "TASKQ_"))}
    env.update(FAST_ENV)
    env.update({"REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)})
    return subprocess.run(
        [sys.executable, "-m", "arq", "tests.stock_settings.WorkerSettings", "--burst"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_sdk_jobs_run_on_the_stock_arq_command(settings: Settings, redis_url: str) -> None:
    with Client(settings=settings) as client:
        ok = client.submit("add", 20, 22)
        slow = client.submit("slow", 5, step=0.01)
        bad = client.submit("boom", 4)
        flaky = client.submit("flaky", 2)
        proc = run_stock_arq(redis_url)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert ok.result(timeout=10) == 42
        assert slow.result(timeout=10) == 5
        assert slow.progress().fraction == 1.0, "report_progress works under the stock worker"
        with pytest.raises(JobFailed) as info:
            bad.result(timeout=10)
        assert info.value.remote_type == "ValueError" and "bad row 4" in info.value.remote_message
        assert "jobfns.py" in info.value.remote_traceback
        assert flaky.result(timeout=10) == 2
        assert "about to fail on 4" in bad.logs()
        # the queued jobs' records became their hashes when the stock worker started them
        assert (flaky.info().attempts, (ok.info().worker or "").startswith("arq:")) == (2, True)
    assert "password" not in proc.stderr.lower() or "***" in proc.stderr


def test_stock_worker_settings_hide_the_password(settings: Settings) -> None:
    from taskq_sdk.worker import make_worker_settings

    ws = make_worker_settings(settings=settings.with_url("redis://:hunter2-secret@127.0.0.1:6390/0"))
    assert "hunter2-secret" not in repr(ws.redis_settings)
    assert ws.allow_abort_jobs is True
    assert ws.job_serializer is not None and ws.job_deserializer is not None


def test_key_names_spelled_in_the_layout_are_arqs_own() -> None:
    """The layout spells arq's key names (so clients never import arq); they must stay arq's."""
    import arq.constants as arq_keys

    from taskq_sdk._backend import layout

    assert layout.job_key_prefix == arq_keys.job_key_prefix
    assert layout.result_key_prefix == arq_keys.result_key_prefix
    assert layout.in_progress_key_prefix == arq_keys.in_progress_key_prefix
    assert layout.retry_key_prefix == arq_keys.retry_key_prefix
    assert layout.default_queue_name == arq_keys.default_queue_name
    assert layout.abort_jobs_ss == arq_keys.abort_jobs_ss
