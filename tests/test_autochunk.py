"""``chunk_size="auto"`` (the default of ``client.map`` and ``df.taskq.apply``) with real workers:
the sizes it plans, and that results, per-row errors, ``key=``, re-runs and re-attach keep working."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis

from taskq_sdk import Client
from taskq_sdk.batch.autochunk import MAX_AUTO_CHUNK, plan_sizes, unknown_sizes
from taskq_sdk.batch.manifest import BatchManifest, runs_of
from taskq_sdk.config import Settings
from taskq_sdk.errors import ConfigurationError

from .conftest import Api, figure


def test_plans_aim_at_the_target_and_shrink_at_the_end() -> None:
    sizes = plan_sizes(400, per_item=0.005, workers=2, target=0.2)
    assert sum(sizes) == 400 and sizes[0] == 40, sizes
    assert sizes == sorted(sizes, reverse=True), "chunks only shrink towards the end"
    assert sizes[-1] <= 10, "the last chunks are small, so both workers finish together"
    assert plan_sizes(8, per_item=2.0, workers=2, target=0.2) == [1] * 8
    big = plan_sizes(100_000, per_item=50e-6, workers=2, target=0.2)
    assert sum(big) == 100_000 and max(big) == 4000 and len(big) < 100
    assert max(plan_sizes(10**7, per_item=0.0, workers=2, target=0.2)) == MAX_AUTO_CHUNK
    assert sum(unknown_sizes(400, workers=2)) == 400 and len(unknown_sizes(400, workers=2)) >= 32
    assert plan_sizes(0, per_item=0.1, workers=2, target=0.2) == []


def test_manifest_keeps_variable_chunk_bounds() -> None:
    sizes = [1, 1, 40, 40, 30, 5, 1]
    m = BatchManifest(
        batch="b", tenant="t", function="f", runner=True, mode="items", n_items=sum(sizes), chunk_size=40,
        key=None, workspace="w", queue="q", timeout=None, max_tries=None, job_ttl_ms=1, created_ms=1,
        runs=runs_of(sizes),
    )  # fmt: skip
    assert m.runs == [[1, 2], [40, 2], [30, 1], [5, 1], [1, 1]]
    again = BatchManifest.decode(m.encode())
    assert again.sizes() == sizes and again.n_jobs == 7 and again.auto
    assert again.bounds(2) == (2, 42) and again.bounds(6) == (117, 118)
    assert again.locate(0) == (0, 0) and again.locate(41) == (2, 39) and again.locate(42) == (3, 0)
    assert again.locate(117) == (6, 0)


def _forget_history(r: redis.Redis, tenant: str) -> None:
    r.delete(f"taskq:t:{tenant}:itemsec")


def test_auto_map_measures_then_sizes_chunks_and_answers_as_before(
    api: Api, worker: Any, sync_redis: redis.Redis
) -> None:
    tenant = f"auto{api.kind}{uuid.uuid4().hex[:6]}"
    client = api.client(tenant=tenant)
    _forget_history(sync_redis, tenant)
    items = list(range(300))
    # ~5 ms per item, no history: a probe job first, then chunks of about 0.2 s (~40 items, where a plan
    # made without a measurement would have ~19)
    batch = api(client.map("sync_slow_item", items, kwargs={"seconds": 0.005}, timing=True))
    sizes = batch.chunk_sizes
    figure(f"autochunk_sizes_{api.kind}", "/".join(map(str, sizes)))
    assert sum(sizes) == 300 and batch.n_jobs == len(sizes) and batch.manifest.auto
    assert sizes[0] == 1, "the first job is the probe: one item"
    assert batch.chunk_size == max(sizes)
    frame = api(batch.to_frame(timeout=60))
    assert frame["sync_slow_item"].tolist() == items
    # the probe's item time sets the chunks, however fast this machine sleeps 5 ms: its timing is in the frame
    probes = max(1, sizes.index(max(sizes)))  # the single-item probe jobs come first, one per live worker
    took = frame["taskq_duration_s"].iloc[:probes]
    target = api.settings.target_chunk_seconds
    fits = [min(MAX_AUTO_CHUNK, max(1, round(target / (d * k)))) for d in took for k in (0.9, 1.1)]
    assert min(fits) <= max(sizes) <= max(fits), f"chunks aim at {target} s of items of {took.tolist()} s: {sizes}"
    counts = api(batch.counts())
    assert (counts.items, counts.done, counts.failed, counts.running) == (300, 300, 0, 0)
    # the same function on slower inputs: the probe measures again instead of trusting the history
    again = api(client.map("sync_slow_item", items[:40], kwargs={"seconds": 0.3}))
    assert again.chunk_sizes == [1] * 40
    assert api(again.results(timeout=60)) == items[:40]
    # per-row errors stay per row
    texts = ["ok", "bad one", *[f"t{i}" for i in range(40)], "bad two"]
    scored = api(client.map("toy_sentiment", texts))
    values = api(scored.gather(timeout=60, errors="return"))
    assert isinstance(values[1], Exception) and isinstance(values[-1], Exception)
    assert values[0]["label"] in ("pos", "neg") and sum(isinstance(v, Exception) for v in values) == 2
    # re-attach by id sees the same chunks
    attached = api(client.batch(batch.id))
    assert attached.chunk_sizes == sizes and api(attached.results(timeout=30)) == items


def test_small_or_slow_maps_run_one_item_per_job(settings: Settings, worker: Any, sync_redis: redis.Redis) -> None:
    tenant = f"autoslow{uuid.uuid4().hex[:6]}"
    _forget_history(sync_redis, tenant)
    with Client(settings=settings, tenant=tenant) as client:
        small = client.map("double", [1, 2, 3])
        assert small.chunk_sizes == [1, 1, 1] and not small.manifest.runner, "few items: plain jobs"
        assert small.jobs()[1].result(timeout=30) == 4
        # items slower than the target: the probe shows it, every item gets its own job
        slow = client.map("sync_slow_item", list(range(6)), kwargs={"seconds": 0.6})
        assert slow.chunk_sizes == [1] * 6
        assert slow.results(timeout=60) == list(range(6))
        with pytest.raises(ConfigurationError, match='"auto" or a positive integer'):
            client.map("double", [1], chunk_size="big")
        # a deferred batch is not probed (its jobs cannot start yet): planned from the history at once
        later = client.map("sync_slow_item", list(range(40)), kwargs={"seconds": 0.6}, _defer_by=60)
        assert later.chunk_sizes == [1] * 40 and "chosen automatically" in later._repr_html_()
        later.cancel()


def test_keyed_auto_batch_reuses_its_chunks_and_reruns_failed_rows(
    settings: Settings, worker: Any, sync_redis: redis.Redis, tmp_path: Path
) -> None:
    tenant = f"autokey{uuid.uuid4().hex[:6]}"
    _forget_history(sync_redis, tenant)
    flags = tmp_path / "flags"
    flags.write_text("3 57 58")
    items = list(range(60))
    with Client(settings=settings, tenant=tenant) as client:
        first = client.map("fail_if_flagged", items, key="auto-run", kwargs={"flags": str(flags)})
        values = first.gather(timeout=60, errors="return")
        assert [i for i, v in enumerate(values) if isinstance(v, Exception)] == [3, 57, 58]
        second = client.map("fail_if_flagged", items, key="auto-run", kwargs={"flags": str(flags)})
        assert second.chunk_sizes == first.chunk_sizes and second.reused == second.n_jobs, "same key: nothing re-runs"
        flags.write_text("")
        assert second.retry_failed() == 3
        assert second.results(timeout=60) == [x * 3 for x in items]
        # rows appended to a keyed batch: its chunks again (reused, with their re-runs), new chunks for the new rows
        grown = client.map("fail_if_flagged", [*items, *range(60, 100)], key="auto-run", kwargs={"flags": str(flags)})
        assert grown.chunk_sizes[: second.n_jobs] == second.chunk_sizes and grown.reused == second.n_jobs
        assert grown.results(timeout=60) == [x * 3 for x in range(100)]
        # a DataFrame fan-out picks its chunks the same way and re-runs only the failed rows
        flags.write_text("5")
        df = pd.DataFrame({"x": list(range(80))}, index=[f"r{i}" for i in range(80)])
        out = df.taskq.apply("fail_if_flagged", column="x", client=client, kwargs={"flags": str(flags)}, progress=False)
        assert out["taskq_status"].tolist().count("failed") == 1 and out.index.equals(df.index)
        flags.write_text("")
        fixed = out.taskq.rerun_failed(client=client, progress=False)
        assert fixed["fail_if_flagged"].tolist() == [x * 3 for x in range(80)]


def test_the_probe_waits_on_the_batch_events_not_a_poll(
    settings: Settings, worker: Any, sync_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from taskq_sdk.batch import autochunk

    tenant = f"autoev{uuid.uuid4().hex[:6]}"
    _forget_history(sync_redis, tenant)
    reads: list[float] = []
    measured = autochunk.measured

    async def counted(*args: Any) -> Any:
        reads.append(time.monotonic())
        return await measured(*args)

    monkeypatch.setattr(autochunk, "measured", counted)
    with Client(settings=settings, tenant=tenant) as client:
        t0 = time.monotonic()
        slow = client.map("sync_slow_item", list(range(40)), kwargs={"seconds": 0.6})
        waited = time.monotonic() - t0
        assert slow.chunk_sizes[0] == 1 and sum(slow.chunk_sizes) == 40
        slow.cancel()
    figure("autochunk_probe_measurement_reads", f"{len(reads)} in {waited:.2f}s")
    # woken by the probe job's started/complete events, else a look every PROBE_RECHECK seconds
    # (a 10 ms poll made ~100 reads a second)
    assert len(reads) <= waited / autochunk.PROBE_RECHECK + 6, (len(reads), waited)
