"""The safe wire format: pickles written into Redis stay inert; errors survive the safe serializer."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import pytest
import redis

from taskq_sdk import Client, JobFailed
from taskq_sdk.config import Settings

from .conftest import figure, wait_until

pytestmark = pytest.mark.security


class Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_pickle_in_a_job_key_is_refused_by_the_worker(
    settings: Settings, worker: Any, sync_redis: redis.Redis, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned-job"
    payload = pickle.dumps({"t": 1, "f": "add", "a": [Evil(marker)], "k": {}, "et": 0})
    sync_redis.set("arq:job:evil-1", payload)
    sync_redis.zadd("arq:queue", {"evil-1": 1})
    with Client(settings=settings) as client:
        job = client.job("evil-1")
        with pytest.raises(JobFailed) as info:
            job.result(timeout=10)
    assert info.value.remote_type == "DeserializationError"
    assert "pickle" in info.value.remote_message
    assert not marker.exists()
    figure("pickle_payloads_executed", int(marker.exists()))


def test_pickle_in_a_result_key_is_refused_by_the_client(
    settings: Settings, sync_redis: redis.Redis, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned-result"
    payload = pickle.dumps({"t": 1, "f": "add", "a": [], "k": {}, "et": 0, "s": True, "r": Evil(marker)})
    sync_redis.set("arq:result:evil-2", payload)
    with Client(settings=settings) as client:
        job = client.job("evil-2")
        with pytest.raises(JobFailed) as info:
            job.result(timeout=5)
    assert info.value.remote_type == "DeserializationError"
    assert not marker.exists()


def test_unknown_id_cancel_never_poisons_a_later_job(settings: Settings, worker: Any, sync_redis: redis.Redis) -> None:
    with Client(settings=settings) as client:
        from taskq_sdk.handles import AsyncJob, Job

        ghost = Job(AsyncJob(client.async_client, "later-1"), client)
        assert ghost.cancel() is False
        assert sync_redis.zscore("arq:abort", "later-1") is None
        job = client.submit("add", 1, 1, _job_id="later-1")
        assert job.result(timeout=10) == 2


def test_local_server_is_loopback_only_with_a_password(server: Any) -> None:
    r = redis.Redis(host=server.host, port=server.port)
    with pytest.raises(redis.AuthenticationError):
        r.ping()
    r.close()
    assert server.host == "127.0.0.1"
    assert server.password not in repr(server) and server.password not in server.safe_url
    wait_until(lambda: True)
