"""Functions defined in a notebook (here: inside test functions) run on a LocalCluster's workers.

Worker subprocesses receive them by value through the cluster's private code directory; in-process
workers use them directly. Re-registering replaces the old version; a name only another cluster
knows raises UnknownJob at submit.
"""

from __future__ import annotations

import asyncio
import linecache
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskq_sdk import JobFailed, LocalCluster, SerializationError, Settings, UnknownJob, report_progress
from taskq_sdk._codeship import CodeResolver, CodeShelf
from taskq_sdk.registry import spec_for

from .conftest import FAST, pid_alive, wait_until


@pytest.fixture(scope="module", params=[True, False], ids=["processes", "threads"])
def cluster(request: pytest.FixtureRequest) -> Iterator[LocalCluster]:
    with LocalCluster(n_workers=2, processes=request.param, settings=Settings(**FAST)) as c:  # type: ignore[arg-type]
        yield c


def test_sync_and_async_functions_run_on_the_cluster(cluster: LocalCluster) -> None:
    client = cluster.client()
    factor = 3  # a closure over a cell's variable travels with the function

    def helper(text: str) -> int:
        return len(text) * factor

    @cluster.job
    def score(text: str) -> dict[str, Any]:
        report_progress(0.5, message="half way")
        return {"score": helper(text), "pid": os.getpid()}

    @cluster.job
    async def square(x: int) -> int:
        await asyncio.sleep(0.01)
        return x * x

    out = client.submit("score", "great").result(timeout=30)
    assert out["score"] == 15
    assert client.submit(square, 7).result(timeout=30) == 49  # by function object, too
    assert score("ab")["score"] == 6  # still a plain function here
    worker_pids = {w.pid for w in cluster.workers}
    assert out["pid"] in worker_pids
    if cluster.processes:
        assert out["pid"] != os.getpid()
    assert {"score", "square"} <= set(cluster.notebook_functions)


def test_reregistering_replaces_the_old_version(cluster: LocalCluster) -> None:
    client = cluster.client()

    @cluster.job
    def version() -> str:
        return "v1"

    assert client.submit("version").result(timeout=30) == "v1"
    queued = client.submit("version", _defer_by=1.0)  # starts after the next registration

    @cluster.job  # the cell edited and run again
    def version() -> str:  # noqa: F811
        return "v2"

    assert client.submit("version").result(timeout=30) == "v2"
    assert queued.result(timeout=30) == "v2"  # a queued job runs the version registered when it starts


def test_options_and_explicit_names(cluster: LocalCluster) -> None:
    client = cluster.client()

    def plain(a: int, b: int) -> int:
        return a - b

    cluster.job(plain, name="minus")
    assert client.submit("minus", 5, 3).result(timeout=30) == 2
    assert client.submit(plain, 9, 3).result(timeout=30) == 6  # the function now carries its name

    @cluster.job(retries=3, retry_delay=0.05)
    def flaky(ctx: dict[str, Any], succeed_on: int) -> int:
        if ctx["job_try"] < succeed_on:
            raise ConnectionError("transient")
        return int(ctx["job_try"])

    job = client.submit("flaky", 2)
    assert job.result(timeout=30) == 2
    assert job.info().attempts == 2


def test_names_this_cluster_never_served_raise_unknown_job(cluster: LocalCluster) -> None:
    with LocalCluster(n_workers=1, processes=False) as other:

        @other.job
        def only_over_there() -> int:
            return 1

        assert other.client().submit("only_over_there").result(timeout=30) == 1
        client = cluster.client()
        with pytest.raises(UnknownJob) as info:
            client.submit("only_over_there")
        assert "only_over_there" in str(info.value)
        with pytest.raises(UnknownJob):
            client.submit("never_registered_anywhere")


def test_function_that_cannot_travel_fails_at_registration(cluster: LocalCluster) -> None:
    if not cluster.processes:
        pytest.skip("in-process workers use the function object itself")
    client = cluster.client()

    @cluster.job
    def guarded() -> str:
        return "old"

    lock = threading.Lock()

    def guarded_new() -> str:  # closes over a lock: cannot be pickled
        with lock:
            return "new"

    with pytest.raises(SerializationError, match="cannot send job function 'guarded'"):
        cluster.job(guarded_new, name="guarded")
    assert client.submit("guarded").result(timeout=30) == "old"  # nothing was replaced


def test_remote_traceback_shows_the_cells_source(cluster: LocalCluster) -> None:
    # a function compiled from a "cell" that exists only in linecache, as IPython does
    filename = f"<taskq-test-cell-{os.getpid()}>"
    source = "def parse(row):\n    value = int(row)  # the failing line\n    return value\n"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {}
    exec(compile(source, filename, "exec"), namespace)
    cluster.job(namespace["parse"])
    job = cluster.client().submit("parse", "17x")
    with pytest.raises(JobFailed) as info:
        job.result(timeout=30)
    assert info.value.remote_type == "ValueError"
    assert filename in info.value.remote_traceback
    assert "int(row)  # the failing line" in info.value.remote_traceback


def test_code_directory_is_private_and_goes_away_with_the_cluster() -> None:
    with LocalCluster(n_workers=1) as c:

        @c.job
        def hello() -> str:
            return "hi"

        assert c.client().submit("hello").result(timeout=30) == "hi"
        assert c._shelf is not None
        code_dir = c._shelf.path
        assert stat.S_IMODE(code_dir.stat().st_mode) == 0o700
        files = list(code_dir.iterdir())
        assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
        html = c._repr_html_()
        assert "hello" in html and c.server.password not in html and "***" in html
    assert not code_dir.exists()


def test_resolver_refuses_a_directory_others_can_use(tmp_path: Path) -> None:
    def shipped() -> str:
        return "ran"

    shelf = CodeShelf(tmp_path / "code")
    shelf.put(spec_for(shipped))
    resolver = CodeResolver(shelf.path)
    spec = resolver("shipped")
    assert spec is not None and spec.fn() == "ran"
    assert resolver("not_there") is None
    os.chmod(shelf.path, 0o777)
    shelf.put(spec_for(shipped))  # a new version forces a reload, which checks the directory
    refused = resolver("shipped")
    os.chmod(shelf.path, 0o700)
    assert refused is not None
    with pytest.raises(RuntimeError, match="refused to load"):
        refused.fn()


def test_register_before_start_and_repeated_start_stop() -> None:
    pids: list[int] = []
    for round_ in range(2):
        c = LocalCluster(n_workers=1, start=False)

        @c.job
        def which_round(value: int = round_) -> int:
            return value

        c.start()
        try:
            assert c.client().submit("which_round").result(timeout=30) == round_
            pids += [c.server.pid or 0, *(w.pid for w in c.workers)]
        finally:
            c.close()
    wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=20, what="servers and workers gone")
