"""Batches on a real server and real workers: map, counts, results in order, streaming, cancel, retry,
re-attach from another process, idempotent re-runs, tenancy, bad inputs.

The main story runs twice, through the blocking ``Client`` and the ``AsyncClient``.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from taskq_sdk import (
    AsyncClient,
    Client,
    ConfigurationError,
    JobCancelled,
    JobFailed,
    JobNotFound,
    JobStatus,
    PayloadTooLarge,
    SerializationError,
    WaitTimeout,
)
from taskq_sdk._backend import layout
from taskq_sdk.batch import AsyncBatch, Batch, BatchCounts
from taskq_sdk.config import Settings

from .conftest import ROOT, Api, figure, wait_until


def test_map_results_in_input_order_counts_and_streaming(api: Api, worker: Any) -> None:
    client = api.client()
    items = list(range(200))
    start = time.perf_counter()
    batch = api(client.map("double", items, chunk_size=1))
    assert isinstance(batch, Batch if api.kind == "sync" else AsyncBatch)
    assert batch.size == len(batch) == 200 and batch.n_jobs == 200 and batch.chunk_size == 1
    assert api(batch.results(timeout=30)) == [x * 2 for x in items]
    figure(f"batch_map_200_roundtrip_{api.kind}_ms", round((time.perf_counter() - start) * 1000))
    counts = api(batch.counts())
    assert isinstance(counts, BatchCounts)
    assert (counts.items, counts.done, counts.failed, counts.running) == (200, 200, 0, 0)
    assert counts.jobs_complete == 200 and counts.finished and api(batch.status()) is JobStatus.complete
    pairs = api.iterate(batch.as_completed(timeout=30))
    assert sorted(pairs) == [(i, i * 2) for i in items]
    assert api(batch.done()) is True
    # chunked: 7 items per job through the chunk runner, same answers
    chunked = api(client.map("adouble", items, chunk_size=7, kwargs={}))
    assert chunked.n_jobs == 29
    assert api(chunked.gather(timeout=30)) == [x * 2 for x in items]
    assert "items done" in str(api(chunked.wait(timeout=30)))


def test_partial_failure_gather_modes_errors_and_frame(api: Api, worker: Any) -> None:
    client = api.client()
    texts = ["good", "bad apple", "fine", None, "very bad", "ok"]
    batch = api(client.map("toy_sentiment", texts, chunk_size=4))
    with pytest.raises(JobFailed) as info:
        api(batch.results(timeout=30))
    # the first failure seen is raised: chunk 2 (items 4-5) may finish before chunk 1
    seen = str(info.value)
    assert ("item 1" in seen and "cannot score 'bad apple'" in seen) or (
        "item 4" in seen and "cannot score 'very bad'" in seen
    ), seen
    assert info.value.remote_type == "ValueError" and "toy_sentiment" in info.value.remote_traceback
    returned = api(batch.gather(errors="return", timeout=30))
    assert [isinstance(v, JobFailed) for v in returned] == [False, True, False, False, True, False]
    assert returned[3] == {"score": None, "label": "empty"}
    skipped = api(batch.gather(errors="skip", timeout=30))
    assert len(skipped) == 4 and skipped[0] == returned[0]
    assert sorted(api(batch.errors(timeout=30))) == [1, 4]
    counts = api(batch.counts())
    assert counts.failed == 2 and counts.done == 6 and counts.status == "partial"
    assert api(batch.status()) is JobStatus.failed, "some items failed: results() raises, as a failed job's"
    frame = api(batch.to_frame(timeout=30))
    assert list(frame.columns) == [
        "toy_sentiment_score", "toy_sentiment_label", "taskq_status", "taskq_error", "taskq_job_id",
    ]  # fmt: skip
    assert frame["taskq_status"].tolist() == ["complete", "failed", "complete", "complete", "failed", "complete"]
    assert frame["taskq_error"].iloc[1].startswith("ValueError: cannot score")
    assert frame["taskq_job_id"].iloc[0] == frame["taskq_job_id"].iloc[3] != frame["taskq_job_id"].iloc[4]
    with pytest.raises(ConfigurationError):
        api(batch.gather(errors="ignore"))


def test_retry_failed_reruns_only_the_failed_items(api: Api, worker: Any, tmp_path: Path) -> None:
    client = api.client()
    flags = tmp_path / "flags"
    flags.write_text("3 11 12")
    items = list(range(20))
    for chunk_size in (1, 5):
        batch = api(client.map("fail_if_flagged", items, chunk_size=chunk_size, kwargs={"flags": str(flags)}))
        values = api(batch.gather(errors="return", timeout=30))
        assert [i for i, v in enumerate(values) if isinstance(v, Exception)] == [3, 11, 12]
        before = {jid: None for jid in batch.job_ids()}
        flags.write_text("12")  # "fix" two of the three
        assert api(batch.retry_failed()) == 3
        values = api(batch.gather(errors="return", timeout=30))
        assert [i for i, v in enumerate(values) if isinstance(v, Exception)] == [12]
        assert values[3] == 9 and values[11] == 33
        frame = api(batch.to_frame(timeout=30))
        assert frame["taskq_job_id"].iloc[3] not in before and frame["taskq_job_id"].iloc[0] in before
        flags.write_text("")
        assert api(batch.retry_failed()) == 1
        assert api(batch.results(timeout=30)) == [x * 3 for x in items]
        assert api(batch.retry_failed()) == 0
        # a fresh handle (as after a kernel restart) sees the re-runs too
        again = api(client.batch(batch.id))
        assert api(again.results(timeout=30)) == [x * 3 for x in items]
        flags.write_text("3 11 12")


def test_cancel_mid_batch_keeps_finished_items(settings: Settings, start_worker: Any) -> None:
    start_worker(max_jobs=2)
    with Client(settings=settings) as client:
        batch = client.map("slow_item", list(range(30)), kwargs={"seconds": 0.2})
        wait_until(lambda: batch.counts().jobs_complete >= 4, timeout=20, what="a few items done")
        t0 = time.perf_counter()
        assert batch.cancel() is True
        counts = batch.wait(timeout=15)
        figure("batch_cancel_settle_ms", round((time.perf_counter() - t0) * 1000))
        assert counts.finished and counts.jobs_cancelled >= 20
        values = batch.gather(errors="return", timeout=10)
        done = [i for i, v in enumerate(values) if v == i]
        gone = [i for i, v in enumerate(values) if isinstance(v, JobCancelled)]
        assert len(done) >= 4 and len(done) + len(gone) == 30
        assert batch.status() in (JobStatus.cancelled, JobStatus.failed)
        assert batch.cancel() is False
        # cancelled items can be run again, and only they
        assert batch.retry_failed() == len(gone)
        assert batch.results(timeout=30) == list(range(30))


def test_reattach_from_a_second_process_gathers_what_finished(settings: Settings, start_worker: Any) -> None:
    start_worker(max_jobs=4)
    url = settings.redis_url.get_secret_value()  # type: ignore[union-attr]
    with Client(settings=settings, tenant="acme") as client:
        batch = client.map("slow_item", list(range(12)), chunk_size=3, key="exp1-run", kwargs={"seconds": 0.1})
        assert batch.id == "acme:exp1-run"
        code = (
            "import json, sys\n"
            "from taskq_sdk import Client\n"
            "with Client(sys.argv[1], tenant='acme') as c:\n"
            "    b = c.batch('exp1-run')\n"
            "    values = b.results(timeout=60)\n"
            "    print(json.dumps({'id': b.id, 'values': values, 'n': b.n_jobs, 'fn': b.function,\n"
            "                      'done': b.counts().done}))\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ARQ_", "TASKQ_"))}
        out = subprocess.run(
            [sys.executable, "-c", code, url], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT
        )
        assert out.returncode == 0, out.stderr[-3000:]
        got = json.loads(out.stdout.strip().splitlines()[-1])
        assert got == {"id": "acme:exp1-run", "values": list(range(12)), "n": 4, "fn": "slow_item", "done": 12}
        # another tenant cannot see it; an unbound client finds it by its full id
        with Client(settings=settings, tenant="globex") as other:
            with pytest.raises(JobNotFound, match="Batch 'exp1-run' was not found"):
                other.batch("exp1-run")
            with pytest.raises(JobNotFound):
                other.batch("acme:exp1-run")
        with Client(settings=settings) as ops:
            assert ops.batch("acme:exp1-run").results(timeout=10) == list(range(12))
            with pytest.raises(JobNotFound):
                ops.batch("exp1-run")


def test_idempotent_rerun_does_not_run_finished_work_again(
    settings: Settings, worker: Any, sync_redis: redis.Redis
) -> None:
    with Client(settings=settings) as client:
        first = client.map("mark", list(range(40)), chunk_size=10, key="cell-7")
        assert first.reused == 0
        assert first.results(timeout=30) == [i * 2 for i in range(40)]
        again = client.map("mark", list(range(40)), chunk_size=10, key="cell-7")
        assert again.reused == 4 and again.id == first.id
        assert again.job_ids() == first.job_ids()
        assert again.results(timeout=30) == [i * 2 for i in range(40)]
        assert "reused=4" in repr(again) and "already submitted" in again._repr_html_()
        runs = {int(k): int(v) for k, v in sync_redis.hgetall("load:runs").items()}
        assert runs == dict.fromkeys(range(40), 1), "no item ran twice"
        # one changed input: only its chunk runs again
        changed = list(range(40))
        changed[25] = 1000
        third = client.map("mark", changed, chunk_size=10, key="cell-7")
        assert third.reused == 3
        assert third.results(timeout=30)[25] == 2000
        runs = {int(k): int(v) for k, v in sync_redis.hgetall("load:runs").items()}
        assert sum(runs.values()) == 50 and runs[1000] == 1
        figure("batch_idempotent_reused_chunks", third.reused)


def test_keyed_rerun_while_running_reuses_running_jobs(settings: Settings, worker: Any) -> None:
    with Client(settings=settings) as client:
        first = client.map("slow_item", list(range(6)), chunk_size=2, key="restart-me", kwargs={"seconds": 0.3})
        again = client.map("slow_item", list(range(6)), chunk_size=2, key="restart-me", kwargs={"seconds": 0.3})
        assert again.reused == 3
        assert again.results(timeout=30) == list(range(6))
        assert first.results(timeout=5) == list(range(6))


def test_empty_batch_and_wait_timeout_without_worker(settings: Settings) -> None:
    with Client(settings=settings) as client:
        empty = client.map("double", [])
        assert empty.size == 0 and empty.results(timeout=1) == [] and empty.counts().finished
        assert empty.to_frame(timeout=1).empty
        batch = client.map("double", [1, 2, 3])
        with pytest.raises(WaitTimeout, match="Gave up waiting for batch"):
            batch.results(timeout=0.3)
        with pytest.raises(WaitTimeout):
            batch.wait(timeout=0.2)
        counts = batch.counts()
        assert counts.jobs_queued == 3 and not counts.finished and batch.status() is JobStatus.queued


def test_bad_inputs_fail_fast_and_enqueue_nothing(settings: Settings, sync_redis: redis.Redis) -> None:
    with Client(settings=settings) as client:
        with pytest.raises(ConfigurationError, match="chunk_size"):
            client.map("double", [1], chunk_size=0)
        with pytest.raises(ConfigurationError, match="key="):
            client.map("double", [1], _job_id="x")
        with pytest.raises(ConfigurationError, match="kwargs="):
            client.map("double", [1], scale=2)
        with pytest.raises(ConfigurationError, match="unknown option"):
            client.map("double", [1], _bogus=2)
        with pytest.raises(ConfigurationError, match="batch key"):
            client.map("double", [1], key="has space")
        with pytest.raises(ConfigurationError, match="star=True"):
            client.map("pair_sum", [1, 2], star=True)
        with pytest.raises(SerializationError, match="item 2"):
            client.map("double", [1, 2, object(), 4])
        with pytest.raises(PayloadTooLarge, match="chunk 1"):
            client.map("double", [b"x"] * 4 + [b"y" * (settings.max_payload_bytes + 10)], chunk_size=4)
        assert sync_redis.zcard("arq:queue") == 0, "nothing was enqueued"
        with pytest.raises(JobNotFound):
            client.batch("never-submitted")


def test_options_kwargs_star_and_tenancy_reach_the_jobs(settings: Settings, worker: Any) -> None:
    with Client(settings=settings, tenant="acme", workspace="w1") as client:
        batch = client.map("kwarg_echo", [1, 2], kwargs={"scale": 3}, chunk_size=1, _timeout=30, _retries=2)
        assert batch.results(timeout=30) == [{"x": x, "scale": 3, "tenant": "acme"} for x in (1, 2)]
        info = batch.jobs()[0].info()
        assert info.timeout == 30 and info.max_tries == 2 and info.workspace == "w1" and info.batch_id
        assert info.id.startswith("acme:") and info.args_repr == "kwarg_echo(1, scale=3)"
        chunked = client.map("kwarg_echo", [1, 2, 3], chunk_size=2, kwargs={"scale": 2})
        assert chunked.results(timeout=30)[2] == {"x": 3, "scale": 2, "tenant": "acme"}
        pairs = client.map("pair_sum", [(1, 2), (3, 4)], star=True)
        assert pairs.results(timeout=30) == [3, 7]
        pairs = client.map("pair_sum", [(1, 2), (3, 4), (5, 6)], star=True, chunk_size=2)
        assert pairs.results(timeout=30) == [3, 7, 11]


def test_bulk_submit_writes_what_submit_writes(settings: Settings, sync_redis: redis.Redis) -> None:
    """Drift guard: the bulk Lua script must leave the same keys, fields and TTLs as SUBMIT."""
    with Client(settings=settings) as client:
        single = client.submit("double", 5, _job_id="single-5")
        batch = client.map("double", [5], key="bulk-5", chunk_size=1)
        (bulk_id,) = batch.job_ids()
        # a queued job's record rides in its job key until a claim or a cancel writes it out as this hash
        for job_id in (single.id, bulk_id):
            assert not sync_redis.exists(f"taskq:t:default:job:{job_id}")
            sync_redis.eval(layout.MATERIALIZE, 0, job_id)
        meta = {k.decode(): v for k, v in sync_redis.hgetall(f"taskq:t:default:job:{single.id}").items()}
        bmeta = {k.decode(): v for k, v in sync_redis.hgetall(f"taskq:t:default:job:{bulk_id}").items()}
        # optional fields are written only when set: the single submit names its reply channel, the bulk its batch
        assert set(meta) - {"rc"} == set(bmeta) - {"batch"}
        assert meta.get("rc") and "batch" not in meta and "rc" not in bmeta
        for field in ("fn", "ws", "queue", "state", "timeout", "max_tries", "attempt", "args"):
            assert meta.get(field) == bmeta.get(field), field
        # neither writes what the id or the queue score already says (bytes per queued job)
        assert not {"tenant", "sched"} & (set(meta) | set(bmeta))
        assert bmeta["batch"] == b"bulk-5"
        for key in ("arq:job:{}", "taskq:t:default:job:{}"):
            ttl_single, ttl_bulk = sync_redis.pttl(key.format(single.id)), sync_redis.pttl(key.format(bulk_id))
            assert ttl_bulk > 0 and abs(ttl_single - ttl_bulk) < 5000, key
        assert sync_redis.zscore("arq:queue", bulk_id) is not None
        assert not sync_redis.exists("taskq:t:default:idx")  # the listing index is per workspace only
        assert sync_redis.smembers("taskq:t:default:wss") == {b"default"}
        assert sync_redis.zscore("taskq:t:default:idx:default", bulk_id) is not None
        enq = sync_redis.hget("taskq:t:default:m:all", "default|double|enq")
        assert enq == b"2"
        for key in sync_redis.scan_iter("taskq:t:default:batch:*"):
            assert sync_redis.pttl(key) > 0, key


def test_facades_mirror_each_other() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            n: inspect.signature(m)
            for n, m in inspect.getmembers(cls, predicate=inspect.isfunction)
            if not n.startswith("_")
        }

    s, a = public(Batch), public(AsyncBatch)
    assert set(s) == set(a), f"only sync: {set(s) - set(a)}, only async: {set(a) - set(s)}"
    for name in a:
        assert list(s[name].parameters) == list(a[name].parameters), name
    assert list(inspect.signature(Client.map).parameters) == list(inspect.signature(AsyncClient.map).parameters)


def test_widget_and_html_views(settings: Settings, worker: Any) -> None:
    pytest.importorskip("ipywidgets")
    with Client(settings=settings) as client:
        batch = client.map("double", list(range(10)), chunk_size=3)
        widget = batch.widget()
        assert batch.results(timeout=30) == [x * 2 for x in range(10)]
        bar = widget.children[1].children[1]
        wait_until(lambda: bar.value == 1.0, timeout=10, what="widget bar full")
        label = widget.children[2]
        assert "10/10 items done" in label.value
        cancel_button = widget.children[1].children[2]
        assert cancel_button.disabled
        page = batch._repr_html_()
        assert batch.id in page and "complete" in page and "10/10" in page
        assert "Batch" in repr(batch) and "items=10" in repr(batch)


@pytest.mark.security
def test_batches_work_under_per_tenant_acl_users_and_stay_private(
    redis_url: str, start_worker_process: Any, tmp_path: Path
) -> None:
    from taskq_sdk.security import create_tenant_user

    from .conftest import FAST

    admin = redis.Redis.from_url(redis_url)
    urls = {t: create_tenant_user(admin, t, password=f"{t}-pw-123", base_url=redis_url) for t in ("acme", "globex")}
    try:
        start_worker_process(env={"REDIS_URL": urls["acme"], "TASKQ_QUEUE": "acme"})
        with (
            Client(urls["acme"], tenant="acme", queue="acme", **FAST) as acme,
            Client(urls["globex"], tenant="globex", queue="globex", **FAST) as globex,
        ):
            flags = tmp_path / "flags"
            flags.write_text("2")
            batch = acme.map("fail_if_flagged", [1, 2, 3], chunk_size=2, key="acl-run", kwargs={"flags": str(flags)})
            assert [isinstance(v, JobFailed) for v in batch.gather(errors="return", timeout=30)] == [0, 1, 0]
            flags.write_text("")
            assert batch.retry_failed() == 1
            assert acme.batch("acl-run").results(timeout=30) == [3, 6, 9]
            slow = acme.map("slow_item", list(range(4)), kwargs={"seconds": 5})
            assert slow.cancel() is True and slow.wait(timeout=10).jobs_cancelled >= 3
            with pytest.raises(JobNotFound):
                globex.batch("acl-run")
            with pytest.raises(JobNotFound):
                globex.batch("acme:acl-run")
            raw = redis.Redis.from_url(urls["globex"])
            with pytest.raises(redis.exceptions.NoPermissionError):
                raw.get("taskq:t:acme:batch:acl-run:m")
            raw.close()
    finally:
        for t in urls:
            admin.execute_command("ACL", "DELUSER", t)
        admin.close()
