"""A queued job keeps its record in its job key: one key per queued job, read, cancelled and run as before.

The record (reply channel, workspace, queue, options, the call's text) rides in arq's job envelope as
its first entry, ``q``. It becomes the job's hash when a claim, a cancel or a dependent needs one, and a
status read takes it in place. These tests check what a user sees of such a job, and that a record
nobody can read (corrupt, another codec) never breaks a status read or a claim.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import Any

import pytest
import redis

from taskq_sdk import Client, JobCancelled, JobStatus
from taskq_sdk._backend import cache_io, layout
from taskq_sdk._backend.record_lua import RECORD_AFTER_MS
from taskq_sdk._names import local_part, new_job_id
from taskq_sdk.config import Settings

from . import cachefns
from .conftest import wait_until


def _has_hash(r: redis.Redis, job_id: str) -> bool:
    return bool(r.exists(layout.meta_key(job_id)))


def _near(when: datetime | None, ms: float, slack_s: float = 5.0) -> bool:
    return when is not None and abs(when.timestamp() - ms / 1000) < slack_s


def test_a_queued_job_is_one_key_and_reads_as_it_was_submitted(settings: Settings, sync_redis: redis.Redis) -> None:
    now = time.time() * 1000
    with Client(settings=settings, workspace="lab") as client:
        job = client.submit("echo", 1, "x", k=2, _timeout=30, _retries=2, _queue="side", _defer_by=60)
        plain = client.submit("noop")
        assert not _has_hash(sync_redis, job.id) and not _has_hash(sync_redis, plain.id)
        assert sync_redis.get(layout.job_key(job.id)).startswith(b"\xc1TQ\x01m")  # type: ignore[union-attr]
        info = job.info()
        assert info.status is JobStatus.deferred
        assert (info.function, info.workspace, info.queue) == ("echo", "lab", "side")
        assert (info.timeout, info.max_tries, info.attempts) == (30.0, 2, 0)
        assert info.args_repr == "echo(1, 'x', k=2)"
        assert _near(info.enqueued_at, now) and _near(info.scheduled_for, now + 60_000)
        assert info.started_at is None and info.worker is None
        p = plain.info()
        assert (p.status, p.function, p.args_repr, p.queue) == (JobStatus.queued, "noop", "noop()", "default")
        assert {j.id for j in client.jobs()} == {job.id, plain.id}
        assert not _has_hash(sync_redis, job.id), "a status read writes nothing"


def test_a_long_record_and_its_own_lifetime(settings: Settings, sync_redis: redis.Redis) -> None:
    """Records of 32-255 and 256+ bytes (msgpack's str8 / str16 headers) and a lifetime of its own."""
    ws, queue = "w" * 63, "q" * 63
    short = settings.model_copy(update={"keep_result": 10, "tombstone_ttl": 20})
    with Client(settings=short, workspace=ws) as client:
        first = client.submit("echo", "a" * 20, _queue=queue)
        second = client.submit("echo", "b" * 400, _queue=queue, _timeout=5)
        for job, arg, head in ((first, "a" * 20, 0xD9), (second, "b" * 400, 0xDA)):
            assert not _has_hash(sync_redis, job.id)
            assert (sync_redis.get(layout.job_key(job.id)) or b"")[8] == head  # str8 / str16
            info = job.info()
            assert (info.function, info.workspace, info.queue) == ("echo", ws, queue)
            assert info.args_repr is not None and info.args_repr.startswith(f"echo('{arg[:10]}")
        assert second.info().timeout == 5.0
        # written out as a hash (as a claim would): it outlives the job by keep_result + tombstone_ttl
        sync_redis.eval(layout.MATERIALIZE, 0, second.id)
        assert _has_hash(sync_redis, second.id)
        meta = {k.decode(): v.decode() for k, v in sync_redis.hgetall(layout.meta_key(second.id)).items()}
        assert meta["ws"] == ws and meta["queue"] == layout.queue_key(queue) and meta["timeout"] == "5.0"
        assert meta["state"] == "queued" and meta["fn"] == "echo" and meta["args"] == second.info().args_repr
        extra = sync_redis.pttl(layout.meta_key(second.id)) - sync_redis.pttl(layout.job_key(second.id))
        assert abs(extra - 30_000) < 1_000
    defaults = settings.model_copy(update={"keep_result": 3600, "tombstone_ttl": 86400})
    with Client(settings=defaults) as client:
        job = client.submit("noop")
        record = sync_redis.get(layout.job_key(job.id))
        assert record is not None and record[8] == 0xA0 + 16  # the reply channel (16 characters) alone
        sync_redis.eval(layout.MATERIALIZE, 0, job.id)
        extra = sync_redis.pttl(layout.meta_key(job.id)) - sync_redis.pttl(layout.job_key(job.id))
        assert abs(extra - RECORD_AFTER_MS) < 1_000


def test_the_default_record_lifetime_is_the_settings_default() -> None:
    fields = Settings.model_fields
    default = fields["keep_result"].default + fields["tombstone_ttl"].default
    assert int(default * 1000) == RECORD_AFTER_MS


def test_a_queued_job_cancelled_by_another_client_ends_its_waiter(settings: Settings, sync_redis: redis.Redis) -> None:
    with Client(settings=settings) as client, Client(settings=settings) as other:
        job = client.submit("add", 1, 2)
        assert not _has_hash(sync_redis, job.id)
        assert other.job(job.id).cancel() is True
        with pytest.raises(JobCancelled):
            job.result(timeout=5)  # the cancel reached the submitting client's reply channel
        assert job.status() is JobStatus.cancelled
        meta = sync_redis.hgetall(layout.meta_key(job.id))
        assert meta[b"state"] == b"cancelled" and meta[b"fn"] == b"add" and meta[b"rc"]


def test_a_claimed_job_gets_its_hash_and_runs(settings: Settings, start_worker: Any, sync_redis: redis.Redis) -> None:
    with Client(settings=settings, workspace="lab") as client:
        jobs = [client.submit("add", i, 1, _retries=4) for i in range(5)]
        assert not any(_has_hash(sync_redis, j.id) for j in jobs)
        start_worker()
        assert [j.result(timeout=10) for j in jobs] == [i + 1 for i in range(5)]
        for j in jobs:
            info = j.info()
            assert (info.status, info.attempts, info.max_tries, info.workspace) == (JobStatus.complete, 1, 4, "lab")
            assert info.worker and info.started_at and info.finished_at


def test_a_dependent_of_a_queued_job_waits_for_it(
    settings: Settings, start_worker: Any, sync_redis: redis.Redis
) -> None:
    with Client(settings=settings) as client:
        parent = client.submit("add", 2, 3)
        child = client.submit("add", parent, 10)
        assert child.status() is JobStatus.waiting
        assert sync_redis.hget(layout.meta_key(parent.id), "children") == child.id.encode()
        start_worker()
        assert child.result(timeout=10) == 15
        assert parent.result(timeout=1) == 5


def test_a_cached_call_while_its_job_is_queued_shares_it(
    settings: Settings, sync_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The serving job's state comes from its record, not from the grace a job being written gets."""
    monkeypatch.setattr(cache_io, "PENDING_GRACE_MS", 0)
    with Client(settings=settings) as client:
        first = client.submit(cachefns.cached_double, "record-share", 4)
        again = client.submit(cachefns.cached_double, "record-share", 4)
        assert again.cached is True and again.id == first.id


def test_a_corrupt_record_reads_as_a_plain_job_and_fails_alone(
    settings: Settings, start_worker: Any, sync_redis: redis.Redis
) -> None:
    with Client(settings=settings) as client:
        job = client.submit("add", 1, 1)
        good = client.submit("add", 2, 2)
        key = layout.job_key(job.id)
        value = sync_redis.get(key)
        assert value is not None
        # the record's header says 255 bytes, the key holds fewer: nothing can be parsed
        sync_redis.set(key, value[:8] + b"\xd9\xff" + value[10:40], keepttl=True)
        assert job.status() is JobStatus.queued and job.info().function is None
        assert sync_redis.eval(layout.MATERIALIZE, 0, job.id) == 1 and not _has_hash(sync_redis, job.id)
        start_worker()
        assert good.result(timeout=10) == 4
        wait_until(lambda: job.status() is JobStatus.failed, what="the corrupt job is failed")


def test_a_pickle_client_writes_the_hash(settings: Settings, sync_redis: redis.Redis) -> None:
    """Only taskq's msgpack envelope carries a record; other encodings keep the job's hash."""
    with Client(settings=settings.model_copy(update={"serializer": "pickle"})) as client:
        job = client.submit("noop")
        assert _has_hash(sync_redis, job.id)
        assert job.info().function == "noop" and job.status() is JobStatus.queued


def test_a_job_handed_to_an_idle_worker_writes_its_hash_at_once(
    settings: Settings, worker: Any, sync_redis: redis.Redis
) -> None:
    wait_until(lambda: sync_redis.zcard(layout.ready_key("default")), what="the idle worker offers itself")
    with Client(settings=settings) as client:
        job = client.submit("sleeper", 0.5)
        assert _has_hash(sync_redis, job.id)  # started by the submit itself: no record step
        assert job.result(timeout=10) == 0.5
        assert job.info().attempts == 1


def test_ids_are_twenty_letters_and_digits(settings: Settings) -> None:
    with Client(settings=settings) as client:
        ids = {client.submit("noop").id for _ in range(200)}
    assert len(ids) == 200 and all(len(i) == 20 and i.isalnum() for i in ids)


def test_a_forked_child_never_makes_its_parents_next_ids() -> None:
    """Ids come from a pool of random bytes read 4 KiB at a time: a forked child (a worker process, a
    multiprocessing pool) starts with an empty pool, so it cannot hand out the bytes its parent will."""
    drawn = [new_job_id() for _ in range(1000)]  # past several refills of the pool
    assert len(set(drawn)) == 1000
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, then out without running anything of the parent's
        try:
            os.write(write_end, " ".join(new_job_id() for _ in range(50)).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        child = pipe.read().split()
    os.waitpid(pid, 0)
    parent = [new_job_id() for _ in range(50)]
    assert len(child) == 50 and not set(child) & set(parent), "the child handed out its parent's next ids"


def test_a_batch_of_queued_items_is_one_key_each_and_counts_as_before(
    settings: Settings, start_worker: Any, sync_redis: redis.Redis
) -> None:
    with Client(settings=settings) as client:
        batch = client.map("double", range(30), chunk_size=1)
        ids = batch.job_ids()
        assert len(ids) == 30 and not any(_has_hash(sync_redis, i) for i in ids)
        info = client.job(ids[3]).info()
        assert (info.status, info.function, info.args_repr) == (JobStatus.queued, "double", "double(3)")
        assert info.batch_id == batch.id and ids[3].startswith(batch.id + ".")
        assert batch.counts().jobs_queued == 30
        cancelled = client.map("double", range(5), chunk_size=1)
        assert cancelled.cancel() is True
        counts = cancelled.counts()
        assert (counts.jobs_cancelled, counts.done) == (5, 5)
        start_worker()
        assert batch.results(timeout=20) == [2 * i for i in range(30)]
        counts = batch.counts()
        assert (counts.jobs_complete, counts.done, counts.failed) == (30, 30, 0)
        assert sync_redis.hget(f"taskq:t:default:batch:{batch.id}:n", "started") == b"30"


def test_batch_items_of_a_tenant_and_of_a_dotted_key_name_their_batch(
    settings: Settings, sync_redis: redis.Redis
) -> None:
    """An item's record names its batch by the length of the id's prefix: tenant prefixes and dots in keys."""
    with Client(settings=settings, tenant="acme") as client:
        for key in ("run.1", None):
            batch = client.map("double", range(3), key=key, chunk_size=1)
            for i, job_id in enumerate(batch.job_ids()):
                assert job_id.startswith("acme:") and not _has_hash(sync_redis, job_id)
                # the record names the batch by the length of the id's own prefix, not by its text
                envelope = sync_redis.get(layout.job_key(job_id)) or b""
                assert b"\x00#%d\x00" % len(local_part(batch.id)) in envelope and b"run.1\x00" not in envelope
                info = client.job(job_id).info()
                # (as before records: a job's batch is the batch's id without its tenant)
                assert (info.batch_id, info.args_repr, info.tenant) == (local_part(batch.id), f"double({i})", "acme")
            assert key is None or batch.id == "acme:" + key
