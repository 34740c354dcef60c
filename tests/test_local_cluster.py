"""LocalCluster: real server + real workers from Python; nothing leaks, nothing outlives its owner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from taskq_sdk import Client, LocalCluster

from .conftest import ROOT, pid_alive, wait_until


@pytest.mark.parametrize("processes", [True, False])
def test_cluster_runs_jobs_and_stops_cleanly(processes: bool) -> None:
    with LocalCluster(n_workers=2, processes=processes, jobs=["tests.jobfns"]) as cluster:
        client = cluster.client()
        assert Client(cluster).submit("add", 1, 2).result(timeout=30) == 3
        jobs = [client.submit("add", i, i) for i in range(20)]
        assert [j.result(timeout=30) for j in jobs] == [2 * i for i in range(20)]
        server_pid = cluster.server.pid
        worker_pids = [w.pid for w in cluster.workers]
        assert len(client.workers()) == 2
        assert "***" in repr(cluster) and cluster.server.password not in repr(cluster)
    assert server_pid is not None and not pid_alive(server_pid)
    if processes:
        assert not any(pid_alive(p) for p in worker_pids)


def test_repeated_start_stop_leaks_nothing() -> None:
    pids: list[int] = []
    for _ in range(3):
        with LocalCluster(n_workers=1, jobs=["tests.jobfns"]) as cluster:
            assert cluster.client().submit("add", 2, 2).result(timeout=30) == 4
            pids += [cluster.server.pid or 0, *(w.pid for w in cluster.workers)]
    assert not any(pid_alive(p) for p in pids)


def test_several_clusters_in_one_process_do_not_collide() -> None:
    with LocalCluster(n_workers=1, jobs=["tests.jobfns"]) as a, LocalCluster(n_workers=1, jobs=["tests.jobfns"]) as b:
        assert a.server.port != b.server.port
        ja = a.client().submit("add", 1, 1, _job_id="same")
        jb = b.client().submit("add", 2, 2, _job_id="same")
        assert (ja.result(timeout=30), jb.result(timeout=30)) == (2, 4)


def test_owner_killed_leaves_no_orphans(tmp_path: Any) -> None:
    script = textwrap.dedent(
        """
        import sys, time
        from taskq_sdk import LocalCluster
        c = LocalCluster(n_workers=2, jobs=["tests.jobfns"])
        print(c.server.pid, *[w.pid for w in c.workers], flush=True)
        time.sleep(120)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert owner.stdout is not None
    pids = [int(x) for x in owner.stdout.readline().split()]
    assert len(pids) == 3 and all(pid_alive(p) for p in pids)
    owner.send_signal(signal.SIGKILL)
    owner.wait(10)
    wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=20, what="server and workers gone")


def test_notebook_functions_are_listed_as_served() -> None:
    from taskq_sdk import WaitTimeout

    with LocalCluster(n_workers=1) as cluster:

        @cluster.job
        def nb_nap(seconds: float) -> float:
            import time

            time.sleep(seconds)
            return seconds

        client = cluster.client()
        job = client.submit("nb_nap", 2)
        wait_until(lambda: "nb_nap" in client.workers()[0].functions, timeout=10, what="heartbeat lists nb_nap")
        with pytest.raises(WaitTimeout) as info:
            job.result(timeout=0.3)
        assert "No live worker serves" not in str(info.value)
        assert job.result(timeout=30) == 2
