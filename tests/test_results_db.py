"""The results DB: finished jobs land in SQLite off the hot path, outlive the server's keys, respect tenants."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from taskq_sdk import AsyncClient, Client, JobFailed
from taskq_sdk.config import Settings
from taskq_sdk.errors import ConfigurationError
from taskq_sdk.local import WorkerThread
from taskq_sdk.results_db import COLUMNS, open_backend, results_url, sqlite_path

from .conftest import JOBS, figure, wait_until


@pytest.fixture
def db_settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(update={"results_db": f"sqlite:///{tmp_path / 'results.db'}", "data_dir": tmp_path})


def test_results_url_and_paths(tmp_path: Path) -> None:
    assert results_url(Settings(redis_url=None, data_dir=tmp_path)) == f"sqlite:///{tmp_path}/results.db"
    assert results_url(Settings(redis_url=None, results_db="off")) is None
    assert results_url(Settings(redis_url=None, results_db=str(tmp_path / "r.db"))) == f"sqlite:///{tmp_path}/r.db"
    assert sqlite_path("sqlite:////var/lib/taskq/r.db") == Path("/var/lib/taskq/r.db")
    assert sqlite_path("sqlite:///rel.db") == Path.cwd() / "rel.db"
    with pytest.raises(ConfigurationError, match="share"):
        sqlite_path("sqlite:///:memory:")
    with pytest.raises(ConfigurationError, match="register_backend"):
        open_backend("postgresql://db/taskq", Settings(redis_url=None))


def test_rows_appear_and_outlive_the_result_keys(
    db_settings: Settings, start_worker: Any, sync_redis: redis.Redis
) -> None:
    start_worker(results_db=db_settings.results_db, data_dir=db_settings.data_dir)
    with Client(settings=db_settings, workspace="exp1") as client:
        ok = client.submit("echo", 1, "two", payload={"x": [1.5, None]}, _job_id="row-ok")
        bad = client.submit("boom", 7, _job_id="row-bad")
        blob = client.submit("big_result", 10, _job_id="row-bytes")
        assert ok.result(timeout=10) == {"args": [1, "two"], "kwargs": {"payload": {"x": [1.5, None]}}}
        with pytest.raises(JobFailed):
            bad.result(timeout=10)
        blob.result(timeout=10)
        wait_until(lambda: len(client.results()) == 3, what="three rows")
        frame = client.results()
        # the server forgets: results expire (here: deleted), the database remembers
        sync_redis.delete(*sync_redis.keys("arq:result:*"))
        assert client.job("row-ok").status().value == "expired"
        again = client.results(workspace="exp1")
    assert list(again.columns) == list(COLUMNS)
    rows = {r.job_id: r for r in again.itertuples()}
    assert rows["row-ok"].state == "complete" and rows["row-ok"].function == "echo"
    assert rows["row-ok"].result == {"args": [1, "two"], "kwargs": {"payload": {"x": [1.5, None]}}}
    assert rows["row-bad"].state == "failed" and rows["row-bad"].error_type == "ValueError"
    assert rows["row-bad"].error_message == "bad row 7" and rows["row-bad"].result is None
    assert rows["row-bytes"].result == b"x" * 10
    assert all(r.workspace == "exp1" and r.tenant == "default" and r.attempt == 1 for r in rows.values())
    assert str(again["finished_at"].dtype) == "datetime64[ns, UTC]" or "UTC" in str(again["finished_at"].dtype)
    assert frame["duration_s"].notna().all()


def test_worker_processes_write_what_the_client_reads(
    settings: Settings, start_worker_process: Any, tmp_path: Path
) -> None:
    """Two worker processes write the same SQLite file (WAL); this process reads it."""
    path = tmp_path / "shared" / "results.db"
    for _ in range(2):
        start_worker_process(env={"TASKQ_RESULTS_DB": f"sqlite:///{path}"})
    with Client(settings=settings.model_copy(update={"results_db": str(path)})) as client:
        # jobs that take a moment, more than one worker's ARQ_MAX_JOBS: both workers get some
        jobs = [client.submit("sleeper", 0.1 + i / 1000) for i in range(40)]
        assert [j.result(timeout=20) for j in jobs] == [0.1 + i / 1000 for i in range(40)]
        wait_until(lambda: len(client.results()) == 40, timeout=10, what="40 rows")
        frame = client.results()
    assert sorted(frame.result) == [0.1 + i / 1000 for i in range(40)]
    assert frame.worker.nunique() == 2, "both workers wrote to the same file"


def test_filters_and_tenancy(db_settings: Settings, start_worker: Any) -> None:
    start_worker(results_db=db_settings.results_db, data_dir=db_settings.data_dir)

    async def main() -> None:
        async with (
            AsyncClient(settings=db_settings, tenant="acme") as acme,
            AsyncClient(settings=db_settings, tenant="globex") as globex,
            AsyncClient(settings=db_settings) as ops,
        ):
            for i in range(3):
                await (await acme.submit("add", i, 1, workspace="a")).result(timeout=10)
            await (await acme.submit("add", 5, 5, workspace="b")).result(timeout=10)
            await (await globex.submit("add", 9, 9)).result(timeout=10)

            async def count() -> int:
                return len(await ops.results())

            deadline = time.monotonic() + 10
            while await count() < 5 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            mine = await acme.results()
            assert set(mine.tenant) == {"acme"} and len(mine) == 4
            assert sorted(mine[mine.workspace == "a"].result) == [1, 2, 3]
            assert len(await acme.results(workspace="b")) == 1
            assert list((await globex.results()).result) == [18]
            with pytest.raises(ConfigurationError, match="bound to tenant 'acme'"):
                await acme.results(tenant="globex")
            assert len(await ops.results()) == 5
            assert set((await ops.results(tenant="globex")).tenant) == {"globex"}
            assert len(await ops.results(since=timedelta(minutes=5), function="add")) == 5
            assert len(await ops.results(since=datetime.now(tz=UTC) + timedelta(minutes=1))) == 0
            assert len(await ops.results(state="failed")) == 0
            assert len(await ops.results(limit=2)) == 2

    asyncio.run(main())


def test_old_rows_are_pruned(db_settings: Settings, start_worker: Any) -> None:
    w = start_worker(results_db=db_settings.results_db, results_db_retention_days=0.5 / 86400)  # half a second
    with Client(settings=db_settings) as client:
        client.submit("add", 1, 1).result(timeout=10)
        wait_until(lambda: len(client.results()) == 1, what="one row")
        time.sleep(0.6)
        writer = w.engine.extensions[0]
        assert type(writer).__name__ == "ResultsDBWriter"
        assert asyncio.run_coroutine_threadsafe(writer.prune(), w._loop).result(10) == 1
        assert len(client.results()) == 0


def test_missing_database_is_an_empty_frame_with_a_warning(settings: Settings, tmp_path: Path) -> None:
    s = settings.model_copy(update={"results_db": str(tmp_path / "none" / "results.db")})
    with Client(settings=s) as client, pytest.warns(UserWarning, match="no results DB"):
        frame = client.results()
    assert frame.empty and list(frame.columns) == list(COLUMNS)
    with Client(settings=settings) as client, pytest.raises(ConfigurationError, match="turned off"):
        client.results()


def _drain(settings: Settings, n: int) -> tuple[float, float, Any]:
    """Start one worker, enqueue ``n`` no-op jobs at once; return jobs/s, CPU ms per job (this process), extension."""
    w = WorkerThread(settings, [JOBS]).start()
    try:
        wait_until(lambda: w.engine is not None and w.engine.status == "running", what="worker running")

        async def fill() -> tuple[float, float]:
            async with AsyncClient(settings=settings) as client:
                rows = [client.core.prepare("add", (i, 1), {}) for i in range(n)]
                started, cpu = time.perf_counter(), time.process_time()
                await client.core.call(lambda s: s.submit(rows, wake_queue="default"))
                return started, cpu

        started, cpu = asyncio.run(fill())
        wait_until(lambda: w.engine is not None and w.engine.jobs_complete >= n, timeout=120, interval=0.01)
        elapsed, cpu_used = time.perf_counter() - started, time.process_time() - cpu
        ext = w.engine.extensions[0] if w.engine is not None and w.engine.extensions else None
        if ext is not None and type(ext).__name__ == "ResultsDBWriter":
            asyncio.run_coroutine_threadsafe(ext.flush(), w._loop).result(10)  # type: ignore[arg-type]
    finally:
        w.stop(now=False)
    return n / elapsed, cpu_used * 1000 / n, ext


def test_results_db_writes_stay_off_the_hot_path(settings: Settings, tmp_path: Path, sync_redis: redis.Redis) -> None:
    """2,000 no-op jobs on one worker (ARQ_MAX_JOBS=10), with and without the results DB.

    What keeps the DB off the hot path is that its rows are written in batches by one thread: the test
    asserts that (every row written, in far fewer transactions than jobs). The drain rates and CPU per
    job are printed as figures only; speed is compared in bench/, not asserted here.
    """
    n = 2000
    with_db = settings.model_copy(update={"results_db": str(tmp_path / "results.db")})
    measured: dict[str, tuple[float, float]] = {}
    for mode, s in (("off", settings), ("on", with_db)):
        sync_redis.flushall()
        rate, cpu_ms, ext = _drain(s, n)
        measured[mode] = (rate, cpu_ms)
        if mode == "on":
            assert ext is not None and type(ext).__name__ == "ResultsDBWriter" and ext.written == n
            figure("results_db_transactions_for_2000_jobs", ext.flushes)
            assert 0 < ext.flushes <= n // 20, f"{ext.flushes} DB transactions for {n} jobs: not batched"
    figure("drain_jobs_per_s_without_results_db", round(measured["off"][0]))
    figure("drain_jobs_per_s_with_results_db", round(measured["on"][0]))
    figure("drain_cpu_ms_per_job_without_results_db", round(measured["off"][1], 3))
    figure("drain_cpu_ms_per_job_with_results_db", round(measured["on"][1], 3))
    with Client(settings=with_db) as client:
        assert len(client.results(function="add")) == n


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_cached_results_are_listed_with_their_entry(
    db_settings: Settings, start_worker: Any, sync_redis: redis.Redis, flavour: str
) -> None:
    """A cache hit is the handle of the run that serves it: that run's row names the cache entry."""
    from . import cachefns

    start_worker(modules=(JOBS, "tests.cachefns"), results_db=db_settings.results_db, data_dir=db_settings.data_dir)

    async def story() -> tuple[Any, Any, Any, str, str]:
        async with AsyncClient(settings=db_settings) as client:
            first = await client.submit(cachefns.cached_double, f"runs:{flavour}", 21)
            assert await first.result(timeout=10) == 42
            hit = await client.submit(cachefns.cached_double, f"runs:{flavour}", 21)
            plain = await client.submit("add", 1, 2)
            assert hit.cached and await plain.result(timeout=10) == 3
            deadline = time.monotonic() + 10
            while len(await client.results()) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return (
                await client.results(),
                await client.results(cached=True),
                await client.results(cached=False),
                hit.id,
                plain.id,
            )

    if flavour == "async":
        every, cached, uncached, hit_id, plain_id = asyncio.run(story())
    else:
        with Client(settings=db_settings) as client:
            first = client.submit(cachefns.cached_double, f"runs:{flavour}", 21)
            assert first.result(timeout=10) == 42
            hit = client.submit(cachefns.cached_double, f"runs:{flavour}", 21)
            plain = client.submit("add", 1, 2)
            assert hit.cached and plain.result(timeout=10) == 3
            wait_until(lambda: len(client.results()) == 2, what="two rows")
            every, cached, uncached = client.results(), client.results(cached=True), client.results(cached=False)
            hit_id, plain_id = hit.id, plain.id
    assert len(every) == 2 and int(sync_redis.get(f"runs:{flavour}") or 0) == 1  # the hit ran nothing
    assert list(cached.job_id) == [hit_id] and list(uncached.job_id) == [plain_id]
    row = cached.iloc[0]
    assert row.result == 42 and row.state == "complete"
    # the entry is the one the server serves the hit from (function digest : inputs digest)
    assert sync_redis.get(f"taskq:t:default:cache:{row.cache_entry}") == hit_id.encode()
    assert uncached.iloc[0].cache_entry is None


def test_a_database_of_the_first_schema_gains_the_cache_column(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:  # version 1: no cache_entry column
        old.execute(
            "CREATE TABLE taskq_results (job_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, workspace TEXT NOT NULL, "
            "function TEXT NOT NULL, state TEXT NOT NULL, attempt INTEGER NOT NULL, started_at REAL, "
            "finished_at REAL NOT NULL, duration_s REAL, worker TEXT, error_type TEXT, error_message TEXT, "
            "result BLOB, result_json TEXT, result_stored INTEGER NOT NULL DEFAULT 0, written_at REAL NOT NULL)"
        )
        old.execute(
            "INSERT INTO taskq_results VALUES "
            "('j1','t','w','f','complete',1,1.0,2.0,1.0,'w1',NULL,NULL,NULL,NULL,1,3.0)"
        )
    db = open_backend(f"sqlite:///{path}", Settings(redis_url=None))
    try:
        db.write([("j2", "t", "w", "f", "complete", 1, 1.0, 2.5, 1.0, "w1", None, None, None, None, 1, 3.0, "ab:cd")])
        rows = db.query(tenants=None, workspace=None, function=None, state=None, since=None, until=None, limit=10)
        assert [(r[0], r[-1]) for r in rows] == [("j1", None), ("j2", "ab:cd")]
        only = db.query(
            tenants=None, workspace=None, function=None, state=None, since=None, until=None, limit=10, cached=True
        )
        assert [r[0] for r in only] == ["j2"]
    finally:
        db.close()
    from taskq_sdk.results_db import read_results

    with pytest.raises(ConfigurationError, match="cached takes"):
        read_results(Settings(redis_url=None, results_db=str(path)), tenants=None, cached="yes")  # type: ignore[arg-type]
