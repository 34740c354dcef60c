"""Bad input fails fast with a typed error, nothing enqueued, no arq/redis-py traceback (RELIABILITY.md)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from taskq_sdk import (
    BrokerUnavailable,
    Client,
    ConfigurationError,
    InvalidName,
    JobNotFound,
    JobStatus,
    PayloadTooLarge,
    ResultExpired,
    SerializationError,
    UnknownJob,
    WaitTimeout,
)
from taskq_sdk.config import Settings

from .conftest import figure

pytestmark = pytest.mark.badinput


def queued(r: redis.Redis) -> int:
    return int(r.zcard("arq:queue"))


def test_unknown_job_name_lists_known_names(settings: Settings, worker: Any, sync_redis: redis.Redis) -> None:
    with Client(settings=settings) as client:
        with pytest.raises(UnknownJob) as info:
            client.submit("ad", 1, 2)
        assert "'add'" in str(info.value) or "add," in str(info.value)
        assert "add" in info.value.known and "boom" in info.value.known
        assert queued(sync_redis) == 0


def test_empty_registry_cannot_judge_so_it_accepts(settings: Settings, sync_redis: redis.Redis) -> None:
    with Client(settings=settings) as client:
        job = client.submit("anything_at_all")
        assert job.status() is JobStatus.queued


def test_unserializable_argument_names_the_argument(settings: Settings, worker: Any, sync_redis: redis.Redis) -> None:
    with Client(settings=settings) as client:
        with pytest.raises(SerializationError) as info:
            client.submit("echo", 1, object())
        assert "args[1]" in str(info.value)
        with pytest.raises(SerializationError) as info:
            client.submit("echo", payload={"ok": 1, "bad": {1, 2, lambda: 0}})
        assert "kwargs['payload']" in str(info.value)
        assert queued(sync_redis) == 0


def test_payload_over_the_limit(settings: Settings, worker: Any, sync_redis: redis.Redis) -> None:
    small = settings.model_copy(update={"max_payload_bytes": 10_000})
    with Client(settings=small) as client:
        with pytest.raises(PayloadTooLarge) as info:
            client.submit("echo", b"x" * 20_000)
        assert "10,000" in str(info.value) and "reference" in str(info.value)
        assert queued(sync_redis) == 0


def test_duplicate_job_id_returns_the_existing_handle(settings: Settings, worker: Any) -> None:
    with Client(settings=settings) as client:
        first = client.submit("add", 1, 2, _job_id="report-1")
        assert first.created is True
        assert first.result(timeout=10) == 3
        second = client.submit("add", 100, 200, _job_id="report-1")
        assert second is not None and second.created is False
        assert second.id == first.id
        assert second.result(timeout=5) == 3, "the existing job's result, not a new run"


@pytest.mark.parametrize("name", ["", "../x", "a*", "A:b", "x" * 300, "Acme", " acme", "-x", 7])
def test_bad_tenant_and_workspace_names(settings: Settings, name: Any, sync_redis: redis.Redis) -> None:
    with pytest.raises(InvalidName):
        Client(settings=settings, tenant=name)
    with Client(settings=settings) as client:
        with pytest.raises(InvalidName):
            client.submit("add", 1, 2, workspace=name)
        with pytest.raises(InvalidName):
            client.submit("add", 1, 2, tenant=name)
    assert queued(sync_redis) == 0


def test_bad_job_ids_and_options(settings: Settings) -> None:
    with Client(settings=settings) as client:
        for bad in ("", "has space", "a:b", "x" * 201):
            with pytest.raises(InvalidName):
                client.submit("add", 1, 2, _job_id=bad)
        with pytest.raises(ConfigurationError, match="_jobid"):
            client.submit("add", 1, 2, _jobid="typo")
        with pytest.raises(ConfigurationError, match="not both"):
            client.submit("add", 1, 2, _defer_by=1, _defer_until=datetime.now(tz=UTC) + timedelta(seconds=5))
        with pytest.raises(ConfigurationError, match="attempts in total"):
            client.submit("add", 1, 2, _retries=0)
        with pytest.raises(ConfigurationError):
            client.submit("add", 1, 2, _timeout=-1)


def test_server_down_at_submit_is_broker_unavailable_within_a_bound() -> None:
    s = Settings(redis_url="redis://127.0.0.1:1/0", connect_timeout=1.0)  # type: ignore[arg-type]
    with Client(settings=s) as client:
        t0 = time.perf_counter()
        with pytest.raises(BrokerUnavailable) as info:
            client.submit("add", 1, 2)
        took = time.perf_counter() - t0
    figure("broker_unavailable_at_submit_seconds", round(took, 3))
    assert took < 5
    assert "127.0.0.1:1" in str(info.value) and "LocalCluster" in str(info.value)


def test_password_never_in_connection_errors() -> None:
    s = Settings(redis_url="redis://:s3cret-pass@127.0.0.1:1/0", connect_timeout=0.5)  # type: ignore[arg-type]
    with Client(settings=s) as client:
        assert "s3cret-pass" not in repr(client)
        with pytest.raises(BrokerUnavailable) as info:
            client.submit("add", 1, 2)
        assert "s3cret-pass" not in str(info.value)
        assert "***" in str(info.value)


def test_result_expired_differs_from_never_existed(settings: Settings, worker: Any, sync_redis: redis.Redis) -> None:
    with Client(settings=settings) as client:
        job = client.submit("add", 1, 2)
        assert job.result(timeout=10) == 3
        sync_redis.delete(f"arq:result:{job.id}")  # the result ages out (TTL), its tombstone stays
        again = client.job(job.id)
        assert again.status() is JobStatus.expired
        with pytest.raises(ResultExpired):
            again.result(timeout=5)
        with pytest.raises(JobNotFound):
            client.job("0123456789abcdef0123456789abcdef")


def test_no_worker_alive_while_waiting(settings: Settings) -> None:
    with Client(settings=settings) as client:
        job = client.submit("anything")
        with pytest.raises(WaitTimeout) as info:
            job.result(timeout=0.5)
        text = str(info.value)
        assert "queued" in text and "No live worker" in text
        assert job.status() is JobStatus.queued, "the job lives on"


def test_known_name_without_live_worker_is_accepted_and_explained(settings: Settings, start_worker: Any) -> None:
    w = start_worker()
    w.stop(now=True)
    with Client(settings=settings) as client:
        job = client.submit("add", 1, 2)  # registered once: accepted, it queues
        with pytest.raises(WaitTimeout) as info:
            job.result(timeout=0.3)
        assert "No live worker" in str(info.value)


def test_result_that_cannot_be_serialized_fails_clearly(settings: Settings, worker: Any) -> None:
    with Client(settings=settings) as client:
        from taskq_sdk import JobFailed

        with pytest.raises(JobFailed) as info:
            client.submit("returns_object").result(timeout=10)
        assert info.value.remote_type == "ResultError"
        assert "result" in info.value.remote_message


def test_result_over_the_limit_fails_clearly(settings: Settings, start_worker: Any) -> None:
    start_worker(max_result_bytes=50_000)
    with Client(settings=settings) as client:
        from taskq_sdk import JobFailed

        with pytest.raises(JobFailed) as info:
            client.submit("big_result", 100_000).result(timeout=10)
        assert "TASKQ_MAX_RESULT_BYTES" in info.value.remote_message


def test_undecodable_text_in_logs_and_errors_never_blocks_the_worker(settings: Settings, worker: Any) -> None:
    with Client(settings=settings) as client:
        from taskq_sdk import JobFailed

        with pytest.raises(JobFailed) as info:
            client.submit("undecodable", b"caf\xe9.txt").result(timeout=10)
        assert "caf" in info.value.remote_message
        assert client.submit("add", 1, 1).result(timeout=10) == 2, "the worker keeps recording results"
