"""The seed's documented calls, verbatim (src.tasks read as taskq_sdk), against a real worker."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from taskq_sdk.config import Settings
from taskq_sdk.jobs.video import VideoResult

from .conftest import wait_until
from .media import MediaServer, make_video


@pytest.fixture
def video_worker(start_worker: Any, tmp_path: Path) -> Any:
    return start_worker(allow_private_urls=True, artifacts_dir=tmp_path / "artifacts")


@pytest.fixture
def media(tmp_path: Path) -> Any:
    make_video(tmp_path / "clip.mp4", seconds=2, fps=10, size=(96, 64), audio=True, scene_cuts=1)
    with MediaServer(tmp_path) as server:
        yield server


def test_seed_usage_block_runs_verbatim(
    settings: Settings, video_worker: Any, media: MediaServer, monkeypatch: Any
) -> None:
    monkeypatch.setenv("REDIS_URL", settings.url())
    url = media.url("/files/clip.mp4")

    async def seed() -> tuple[str, dict[str, Any], str]:
        from taskq_sdk.queue_service import TaskQueueService

        queue = TaskQueueService()
        await queue.initialize()

        job_id = await queue.enqueue(
            "process_video_async",
            video_url=url,
            tenant="my_tenant",
            workspace="my_workspace",
        )

        await queue.wait(job_id, timeout=60)
        status = await queue.get_status(job_id)
        print(f"Job {job_id}: {status['status']}")
        print(f"Result: {status['result']}")

        new_job_id = await queue.retry(job_id)
        await queue.close()
        return job_id, status, new_job_id

    job_id, status, new_job_id = asyncio.run(seed())
    assert status["status"] == "complete"
    result = VideoResult.model_validate(status["result"])
    assert result.tenant == "my_tenant" and result.workspace == "my_workspace"
    assert result.video[0].width == 96 and result.video[0].height == 64
    assert result.audio and result.audio[0].sample_rate == 44100
    assert result.scene_changes == 1
    assert all(Path(p).exists() for p in result.thumbnails)
    assert job_id.startswith("my_tenant:") and new_job_id != job_id


def test_seed_cancel_and_status_of_unknown(settings: Settings, monkeypatch: Any) -> None:
    monkeypatch.setenv("REDIS_URL", settings.url())

    async def seed() -> tuple[bool, bool, dict[str, Any]]:
        from taskq_sdk.queue_service import TaskQueueService

        queue = TaskQueueService()
        await queue.initialize()
        job_id = await queue.enqueue("add", 1, 2, _defer_by=60)
        success = await queue.cancel(job_id)
        again = await queue.cancel(job_id)
        status = await queue.get_status("no-such-job")
        await queue.close()
        return success, again, status

    success, again, status = asyncio.run(seed())
    assert success is True and again is False
    assert status["status"] == "not_found" and status["result"] is None


def test_submit_video_from_the_client_with_progress(settings: Settings, video_worker: Any, media: MediaServer) -> None:
    from taskq_sdk import Client

    with Client(settings=settings.model_copy(update={"allow_private_urls": True})) as client:
        job = client.submit_video(media.url("/files/clip.mp4"), workspace="exp1")
        fractions: list[float] = []
        wait_until(lambda: fractions.append(job.progress().fraction or 0) or job.done(), timeout=60)
        result = VideoResult.model_validate(job.result())
        assert result.video[0].frames == 20
        assert fractions == sorted(fractions)
        assert job.progress().fraction == 1.0


def test_worker_health_as_the_seed_shows(settings: Settings, worker: Any) -> None:
    from taskq_sdk import worker as worker_module

    stats = worker_module.get_worker_stats()  # the in-process worker
    print(f"Status: {stats['status']}")
    print(f"Max Jobs: {stats['max_jobs']}")
    assert stats["status"] == "running"
    assert stats["max_jobs"] == settings.max_jobs
