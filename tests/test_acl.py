"""Per-tenant ACL users on the real server: a tenant's credentials cannot reach another tenant's jobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from taskq_sdk import Client, JobCancelled, JobFailed, JobNotFound
from taskq_sdk._backend import layout
from taskq_sdk.models import HealthSnapshot

from .conftest import FAST, ROOT, figure, tenant_users, wait_until

pytestmark = pytest.mark.security


@pytest.fixture
def tenant_urls(redis_url: str) -> Iterator[dict[str, str]]:
    with tenant_users(redis_url, ("acme", "globex")) as urls:
        yield urls


def test_tenant_users_are_confined_to_their_keys(tenant_urls: dict[str, str], start_worker_process: Any) -> None:
    start_worker_process(env={"REDIS_URL": tenant_urls["acme"], "TASKQ_QUEUE": "acme"})
    start_worker_process(env={"REDIS_URL": tenant_urls["globex"], "TASKQ_QUEUE": "globex"})
    with (
        Client(tenant_urls["acme"], tenant="acme", queue="acme", **FAST) as acme,
        Client(tenant_urls["globex"], tenant="globex", queue="globex", **FAST) as globex,
    ):
        a = acme.submit("add", 1, 2)
        g = globex.submit("add", 10, 20)
        assert a.result(timeout=30) == 3
        assert g.result(timeout=30) == 30
        assert acme.metrics().totals.complete == 1
        assert [j.id for j in acme.jobs()] == [a.id]

        with pytest.raises(JobNotFound):
            acme.job(g.id)
        raw = redis.Redis.from_url(tenant_urls["acme"])
        refused = 0
        for attempt in (
            lambda: raw.get(f"arq:result:{g.id}"),
            lambda: raw.hgetall(f"taskq:t:globex:job:{g.id}"),
            lambda: raw.zadd("arq:queue:globex", {"x": 1}),
            lambda: raw.zadd("arq:abort", {g.id: 1}),
            lambda: raw.zadd("arq:queue:globex:abort", {g.id: 1}),
            lambda: raw.publish("taskq:control:globex", "{}"),
            lambda: raw.delete("arq:queue"),
            lambda: raw.flushall(),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                attempt()
            refused += 1
        raw.close()
        figure("acl_cross_tenant_commands_refused", f"{refused}/8")
        from taskq_sdk.handles import AsyncJob, Job

        with pytest.raises(JobNotFound):  # a forged handle is refused by the SDK, before the server's ACL
            Job(AsyncJob(acme.async_client, g.id), acme)
        assert g.result(timeout=5) == 30, "globex's job untouched"


def _enumeration_attempts(victim_key: str, victim_channel: str, own_key: str) -> list[tuple[str, list[Any]]]:
    """Commands that list or probe other tenants' keys, channels or activity (issue 18)."""
    return [
        ("SCAN", ["SCAN", "0", "COUNT", "1000"]),
        ("SCAN MATCH", ["SCAN", "0", "MATCH", "taskq:*"]),
        ("KEYS", ["KEYS", "*"]),
        ("RANDOMKEY", ["RANDOMKEY"]),
        ("DBSIZE", ["DBSIZE"]),
        ("PUBSUB CHANNELS", ["PUBSUB", "CHANNELS"]),
        ("PUBSUB NUMSUB", ["PUBSUB", "NUMSUB", victim_channel]),
        ("PUBSUB NUMPAT", ["PUBSUB", "NUMPAT"]),
        ("PUBSUB SHARDCHANNELS", ["PUBSUB", "SHARDCHANNELS"]),
        ("PUBSUB SHARDNUMSUB", ["PUBSUB", "SHARDNUMSUB", victim_channel]),
        ("CLIENT TRACKING BCAST", ["CLIENT", "TRACKING", "on", "BCAST"]),
        ("CLIENT TRACKING BCAST PREFIX", ["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", victim_key[:12]]),
        ("CLIENT LIST", ["CLIENT", "LIST"]),
        ("MONITOR", ["MONITOR"]),
        ("OBJECT ENCODING", ["OBJECT", "ENCODING", victim_key]),
        ("DEBUG OBJECT", ["DEBUG", "OBJECT", victim_key]),
        ("MEMORY USAGE", ["MEMORY", "USAGE", victim_key]),
        ("SORT BY", ["SORT", own_key, "BY", "taskq:*"]),
        ("SORT_RO GET", ["SORT_RO", own_key, "GET", "taskq:*"]),
        ("EVAL SCAN", ["EVAL", "return redis.call('SCAN', '0')", "0"]),
        ("EVAL RANDOMKEY", ["EVAL", "return redis.call('RANDOMKEY')", "0"]),
        ("FUNCTION LIST", ["FUNCTION", "LIST"]),
        ("FUNCTION FLUSH", ["FUNCTION", "FLUSH"]),
        ("SCRIPT FLUSH", ["SCRIPT", "FLUSH"]),
        ("SCRIPT KILL", ["SCRIPT", "KILL"]),
        ("SLOWLOG GET", ["SLOWLOG", "GET"]),
    ]


def test_tenant_users_cannot_enumerate_other_tenants(
    tenant_urls: dict[str, str], redis_url: str, start_worker_process: Any
) -> None:
    start_worker_process(env={"REDIS_URL": tenant_urls["acme"], "TASKQ_QUEUE": "acme"})
    start_worker_process(env={"REDIS_URL": tenant_urls["globex"], "TASKQ_QUEUE": "globex"})
    with Client(tenant_urls["globex"], tenant="globex", queue="globex", **FAST) as globex:
        victim = globex.submit("slow", 200, step=0.05)  # running while acme probes: live activity to find
        wait_until(lambda: victim.status().value == "in_progress", timeout=20, what="globex's job running")
        raw = redis.Redis.from_url(tenant_urls["acme"])
        own_key = layout.index_key("acme")
        attempts = _enumeration_attempts(layout.meta_key(victim.id), layout.job_channel(victim.id), own_key)
        allowed: list[str] = []
        for name, command in attempts:
            try:
                answer = raw.execute_command(*command)
            except redis.exceptions.NoPermissionError:
                continue
            except redis.exceptions.ResponseError as exc:
                if "NOPERM" in str(exc) or "no permissions" in str(exc) or "command not allowed" in str(exc):
                    continue
                allowed.append(f"{name}: {exc}")  # ran, and failed for another reason
                continue
            allowed.append(f"{name}: {str(answer)[:120]}")
        raw.close()
        refused = len(attempts) - len(allowed)
        figure("acl_enumeration_commands_refused", f"{refused}/{len(attempts)}")
        assert allowed == [], "\n".join(allowed)
        assert victim.cancel()

    # the tenant's normal use of the SDK still works under the tighter rules
    with Client(tenant_urls["acme"], tenant="acme", queue="acme", **FAST) as acme:
        job = acme.submit("slow", 3, step=0.05)
        assert job.result(timeout=30) == 3 and job.progress().fraction == 1.0
        failed = acme.submit("boom", 3)
        with pytest.raises(JobFailed):
            failed.result(timeout=30)
        assert any("about to fail on 3" in line for line in failed.logs())
        long = acme.submit("slow", 400, step=0.05)
        wait_until(lambda: long.status().value == "in_progress", timeout=20, what="a running job")
        assert long.cancel() and isinstance(long.exception(timeout=30), JobCancelled)
        batch = acme.map("add", [(i, i) for i in range(5)], star=True, chunk_size=1)
        assert batch.results(timeout=30) == [0, 2, 4, 6, 8]
        assert {w.queue for w in acme.workers()} >= {"acme"}
        assert acme.job(job.id).result(timeout=5) == 3
        assert len(acme.jobs(limit=100)) >= 8
        assert acme.metrics().totals.complete >= 6


def test_tenant_users_get_their_own_health(
    tenant_urls: dict[str, str], redis_url: str, start_worker_process: Any
) -> None:
    start_worker_process(env={"REDIS_URL": tenant_urls["acme"], "TASKQ_QUEUE": "acme"})
    start_worker_process(env={"REDIS_URL": tenant_urls["globex"], "TASKQ_QUEUE": "globex"})
    with (
        Client(tenant_urls["acme"], tenant="acme", queue="acme", **FAST) as acme,
        Client(tenant_urls["globex"], tenant="globex", queue="globex", **FAST) as globex,
    ):
        assert acme.submit("add", 1, 1).result(timeout=30) == 2
        for i in range(6):
            with pytest.raises(JobFailed):
                globex.submit("boom", i).result(timeout=30)
        views = {"health()": acme.health(), "health(refresh=True)": acme.health(refresh=True)}
        history = acme.health_history(5)
        theirs = globex.health(refresh=True)
    cli = subprocess.run(
        [sys.executable, "-m", "taskq_sdk.cli", "health", "--tenant", "acme", "--json"],
        env={**_clean_env(), "REDIS_URL": tenant_urls["acme"], "TASKQ_QUEUE": "acme"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode in (0, 1), cli.stdout + cli.stderr
    views["taskq health --tenant acme"] = HealthSnapshot.model_validate(json.loads(cli.stdout))
    for name, h in views.items():
        assert h.live_workers >= 1 and h.status == "ok", (name, h.reasons)
        assert h.jobs.complete == 1 and h.jobs.failed == 0 and set(h.jobs_by_tenant) == {"acme"}, name
        assert [q.name for q in h.queues] == ["acme"], (name, h.queues)
    assert history == []  # the stored snapshots are everyone's: not readable by a tenant user
    assert theirs.status == "degraded" and any("failure rate 100%" in r for r in theirs.reasons), theirs.reasons


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ARQ_", "TASKQ_"))}
