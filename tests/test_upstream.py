"""Jobs that take other jobs as arguments: waiting, released by the upstream's finish, UpstreamFailed.

The same stories through Client and AsyncClient, with a real worker.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from taskq_sdk import JobFailed, JobStatus
from taskq_sdk.config import Settings
from taskq_sdk.errors import ConfigurationError, short_id
from taskq_sdk.views.html import job_html

from .conftest import Api, wait_until


def test_a_diamond_runs_in_order_with_results_in_place_of_handles(api: Api, worker: Any) -> None:
    client = api.client()
    a = api(client.submit("add", 1, 2))
    b = api(client.submit("add", a, 10))
    c = api(client.submit("add", a, b=100))
    d = api(client.submit("add", b, c))
    assert api(d.result(timeout=30)) == (3 + 10) + (3 + 100)
    info = api(d.info())
    assert info.status is JobStatus.complete and info.parents == [b.id, c.id]
    assert api(a.info()).children == [b.id, c.id]
    # its call shows the handles it took as what they stand for, not the markers the worker swaps
    assert api(b.info()).args_repr == f"add(<result of {short_id(a.id)}>, 10)"
    assert api(c.info()).args_repr == f"add(<result of {short_id(a.id)}>, b=100)"
    # the card draws the little graph: the jobs d waits on, coloured by their statuses, -> this job
    statuses = {b.id: api(b.status()), c.id: api(c.status())}
    card = job_html(d.id, info, statuses=statuses)
    assert nodes(card) == [(b.id, "complete"), (c.id, "complete"), (d.id, "complete")]
    assert nodes(job_html(a.id, api(a.info()))) == [(a.id, "complete"), (b.id, "?"), (c.id, "?")]


def nodes(card: str) -> list[tuple[str, str]]:
    """The graph's boxes in drawing order: (job id, status word)."""
    return re.findall(r'class="taskq-node" data-job="([^"]+)" data-status="([^"]+)"', card)


def test_a_dependent_waits_while_its_upstream_runs(api: Api, worker: Any) -> None:
    client = api.client()
    upstream = api(client.submit("slow", 10, step=0.1))
    dependent = api(client.submit("add", upstream, 1))
    assert api(dependent.status()) is JobStatus.waiting
    assert api(dependent.info()).scheduled_for is None
    assert api(dependent.result(timeout=30)) == 11
    assert api(upstream.status()) is JobStatus.complete


def test_a_failure_in_the_middle_fails_the_dependents_naming_it(api: Api, worker: Any) -> None:
    client = api.client()
    a = api(client.submit("add", 1, 2))
    b = api(client.submit("boom", a))
    c = api(client.submit("add", b, 1))
    d = api(client.submit("add", c, 1))
    with pytest.raises(JobFailed) as failed:
        api(c.result(timeout=30))
    assert failed.value.remote_type == "UpstreamFailed"
    assert b.id in failed.value.remote_message and "ValueError" in failed.value.remote_message
    with pytest.raises(JobFailed) as chained:
        api(d.result(timeout=30))
    assert chained.value.remote_type == "UpstreamFailed" and c.id in chained.value.remote_message
    assert api(a.result(timeout=10)) == 3  # upstream of the failure: untouched


def test_a_wide_fan_in_gets_every_result_in_order(api: Api, worker: Any) -> None:
    client = api.client()
    parts = [api(client.submit("add", i, 0)) for i in range(1000)]
    total = api(client.submit("echo", parts))
    assert api(total.result(timeout=60))["args"] == [list(range(1000))]


def test_cancelling_a_dependent_leaves_its_upstream_and_cancelling_an_upstream_fails_it(api: Api, worker: Any) -> None:
    client = api.client()
    upstream = api(client.submit("slow", 5, step=0.1))
    dependent = api(client.submit("add", upstream, 1))
    assert api(dependent.cancel()) is True
    assert api(upstream.result(timeout=30)) == 5
    assert api(dependent.status()) is JobStatus.cancelled

    later = api(client.submit("add", 1, 2, _defer_by=60))
    waiting = api(client.submit("add", later, 1))
    assert api(later.cancel()) is True
    with pytest.raises(JobFailed) as failed:
        api(waiting.result(timeout=30))
    assert failed.value.remote_type == "UpstreamFailed" and later.id in failed.value.remote_message


def test_an_already_finished_upstream_releases_at_once(api: Api, worker: Any) -> None:
    client = api.client()
    a = api(client.submit("add", 2, 2))
    assert api(a.result(timeout=10)) == 4
    assert api(api(client.submit("add", a, 1)).result(timeout=10)) == 5


def test_a_cycle_and_another_tenants_job_are_refused(settings: Settings, worker: Any) -> None:
    from taskq_sdk import Client

    with Client(settings=settings, tenant="acme") as acme, Client(settings=settings, tenant="other") as other:
        a = acme.submit("add", 1, 2, _job_id="a1")
        with pytest.raises(ConfigurationError, match="cycle"):
            acme.submit("add", a, 1, _job_id="a1")
        with pytest.raises(ConfigurationError, match="own tenant"):
            other.submit("add", a, 1)
        assert a.result(timeout=10) == 3


@pytest.mark.chaos
def test_a_worker_killed_under_the_upstream_still_releases_the_dependent_once(
    settings: Settings, start_worker_process: Any, sync_redis: Any
) -> None:
    import os
    import signal

    from taskq_sdk import Client

    from . import cachefns
    from .conftest import JOBS

    modules = (JOBS, "tests.cachefns")
    start_worker_process(modules=modules)
    with Client(settings=settings) as client:
        upstream = client.submit("record_pid", "up:pids", 1.5, _timeout=30)
        dependent = client.submit(cachefns.uncached_count, "up:runs", upstream)
        entry = wait_until(lambda: sync_redis.lindex("up:pids", 0), timeout=30, what="the upstream started")
        os.kill(int(entry.decode().split(":")[0]), signal.SIGKILL)
        start_worker_process(modules=modules)
        second = dependent.result(timeout=60)  # the upstream returns the pid that ran it: the second attempt's
        assert sync_redis.lindex("up:pids", 1).decode() == f"{second}:2"
    assert int(sync_redis.get("up:runs") or 0) == 1


def test_a_batch_stands_for_its_items_results(api: Api, worker: Any) -> None:
    client = api.client()
    one_per_item = api(client.map("add", [(1, 1), (2, 2), (3, 3)], star=True))
    chunked = api(client.map("add", [(i, 0) for i in range(10)], star=True, chunk_size=4))
    both = api(client.submit("echo", one_per_item, chunked))
    assert api(both.result(timeout=30))["args"] == [[2, 4, 6], list(range(10))]
    bad = api(client.map("boom", [1, 2], chunk_size=2))
    with pytest.raises(JobFailed) as failed:
        api(api(client.submit("echo", bad)).result(timeout=30))
    assert failed.value.remote_type == "UpstreamFailed" and "ValueError" in failed.value.remote_message


def test_the_job_widget_draws_the_graph_with_live_statuses(settings: Settings, worker: Any) -> None:
    from taskq_sdk import Client
    from taskq_sdk.views.widgets import JobWidget

    with Client(settings=settings) as client:
        upstream = client.submit("slow", 10, step=0.1)
        other = client.submit("add", 1, 1)
        dependent = client.submit("add", upstream, other)
        child = client.submit("add", dependent, 1)
        view = JobWidget(dependent)
        wait_until(lambda: (dependent.id, "waiting") in nodes(view.graph.value), timeout=10, what="waiting drawn")
        wait_until(lambda: not view.running, timeout=30, what="the view followed the job to its end")
        assert child.result(timeout=30) == 13
        # after the end: upstream jobs, this job, the job that waits on it (its status at that moment)
        drawn = nodes(view.graph.value)
        assert drawn[:3] == [(upstream.id, "complete"), (other.id, "complete"), (dependent.id, "complete")]
        assert drawn[3][0] == child.id and len(drawn) == 4


def test_taskq_jobs_and_status_show_waiting_jobs_and_their_parents(
    settings: Settings, redis_url: str, worker: Any
) -> None:
    from taskq_sdk import Client

    from .test_cli import taskq

    with Client(settings=settings) as client:
        later = client.submit("add", 1, 2, _defer_by=60, _job_id="later-up")
        waiting = client.submit("add", later, 1, _job_id="waits-down")
        assert waiting.status() is JobStatus.waiting
        table = taskq(redis_url, "jobs", "--status", "waiting")
        assert table.returncode == 0, table.stderr
        head, *lines = table.stdout.splitlines()
        assert "WAITS ON" in head and len(lines) == 1
        assert lines[0].split()[:2] == ["waits-down", "waiting"] and lines[0].split()[-1] == "later-up"
        listed = json.loads(taskq(redis_url, "jobs", "--json").stdout)
        assert {j["id"]: j["parents"] for j in listed}["waits-down"] == ["later-up"]
        down = taskq(redis_url, "status", "waits-down")
        assert "waiting" in down.stdout and "waits on: later-up" in down.stdout
        assert "needed by: waits-down" in taskq(redis_url, "status", "later-up").stdout
        later.cancel()


def test_the_graph_of_a_wide_fan_in_shows_the_first_few_and_counts_the_rest() -> None:
    from taskq_sdk.views.html import GRAPH_MAX_SHOWN, graph_html

    parents = [f"p{i}" for i in range(GRAPH_MAX_SHOWN + 2)]
    card = graph_html("d<x>", JobStatus.waiting, parents, [], {"p0": JobStatus.failed})
    assert nodes(card)[:2] == [("p0", "failed"), ("p1", "?")] and nodes(card)[-1] == ("d&lt;x&gt;", "waiting")
    assert len(nodes(card)) == GRAPH_MAX_SHOWN + 1 and "+ 2 more" in card
    assert graph_html("d", JobStatus.queued, [], [], {}) == ""
