"""Ways one tenant could reach another's jobs, or break its views, on a shared server (issue 18).

Each test is one attack, written before its fix: forged job handles, junk written into the shared
worker-liveness keys, health reports naming other tenants' jobs, and a content pipeline re-pointing
an existing job's webhook. The ACL-confined cases live in tests/test_acl.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import redis

from taskq_sdk import AsyncClient, Client, JobFailed, JobLost, JobNotFound, JobStatus, WaitTimeout
from taskq_sdk._backend import layout
from taskq_sdk._backend.local_admin import cluster_view, live_worker_pids
from taskq_sdk.config import Settings
from taskq_sdk.handles import AsyncJob, Job
from taskq_sdk.pipeline_integration import AsyncContentPipeline, ContentPipeline

from . import test_pipeline
from .conftest import ROOT, figure, wait_until
from .test_pipeline import HookServer

pytestmark = pytest.mark.security

hooks = test_pipeline.hooks  # the loopback webhook receiver fixture


def _cli(redis_url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ARQ_", "TASKQ_"))}
    e["REDIS_URL"] = redis_url
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "taskq_sdk.cli", *args], env=e, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


# ----------------------------------------------------------------------------- 4. forged handles
def test_forged_handles_read_nothing_of_another_tenant(settings: Settings, worker: Any) -> None:
    """A client bound to ``evil`` builds handles on ``acme``'s (and the default tenant's) ids by every route."""
    with (
        Client(settings=settings, tenant="acme") as acme,
        Client(settings=settings) as ops,
        Client(settings=settings, tenant="evil") as evil,
    ):
        failed = acme.submit("boom", 7, _job_id="payroll")  # prints and logs, then fails
        done = acme.submit("slow", 3, step=0.01)  # reports progress
        plain = ops.submit("boom", 8)  # a default-tenant job, named by a bare id
        for job in (failed, plain):
            with pytest.raises(JobFailed):
                job.result(timeout=10)
        assert done.result(timeout=10) == 3
        assert failed.logs() and plain.logs(), "the victims' jobs left logs to steal"

        routes: list[tuple[str, Callable[[str], Any]]] = [
            ("AsyncJob(client, id)", lambda i: Job(AsyncJob(evil.async_client, i), evil)),
            ("AsyncJob(core, id)", lambda i: Job(AsyncJob(evil.async_client.core, i), evil)),
            ("AsyncJob(..., known=True)", lambda i: Job(AsyncJob(evil.async_client.core, i, known=True), evil)),
            ("AsyncJob(..., created=True)", lambda i: Job(AsyncJob(evil.async_client.core, i, created=True), evil)),
            ("Job(victim's AsyncJob, evil)", lambda i: Job(AsyncJob(ops.async_client, i), evil)),
            ("client.job(id)", evil.job),
        ]
        reads: list[str] = []
        refusals: list[str] = []
        broken: list[str] = []

        def attempt(route: str, make: Callable[[str], Any], job_id: str) -> None:
            try:
                handle = make(job_id)
            except JobNotFound as exc:
                refusals.append(f"{route}: {exc}")
                return
            probes: list[tuple[str, Callable[[], bool]]] = [
                ("result", lambda: _returns(lambda: handle.result(timeout=1))),
                ("exception", lambda: _returns(lambda: _stolen_error(handle.exception(timeout=1)))),
                ("status", lambda: handle.status() not in (JobStatus.not_found, JobStatus.lost)),
                ("info", lambda: handle.info().function is not None),
                ("progress", lambda: handle.progress().fraction is not None),
                ("logs", lambda: bool(handle.logs())),
                ("cancel", lambda: handle.cancel()),
                ("retry", lambda: _returns(lambda: handle.retry())),
            ]
            for name, probe in probes:
                try:
                    if probe():
                        reads.append(f"{route} {job_id} {name}")
                except Exception as exc:  # neither data nor a clear refusal
                    broken.append(f"{route} {job_id} {name}: {type(exc).__name__}: {exc}")

        for route, make in routes:
            for job_id in (failed.id, done.id, plain.id, "payroll"):
                attempt(route, make, job_id)
        figure("forged_handle_reads", len(reads))
        assert reads == [], "\n".join(reads)
        assert broken == [], "\n".join(broken)
        assert refusals and all("not found" in r.lower() for r in refusals), refusals
        # evil's own ids (bare or qualified) still make handles, in its own namespace
        own = evil.submit("add", 1, 1, _job_id="mine")
        assert own.result(timeout=10) == 2
        assert Job(AsyncJob(evil.async_client, "mine"), evil).result(timeout=5) == 2
        assert Job(AsyncJob(evil.async_client, own.id), evil).result(timeout=5) == 2
        # and the victims' jobs are untouched
        assert done.result(timeout=1) == 3 and acme.job("payroll").status() is JobStatus.failed


def _stolen_error(exc: BaseException | None) -> bool:
    return exc is not None and not isinstance(exc, JobLost | JobNotFound)


def _returns(call: Callable[[], Any]) -> bool:
    """Whether ``call`` gave back the job's data (errors that say "not found", "lost" or "timed out" do not).

    A handle made with ``known=True`` on an id that does not exist reads as lost: that is the handle's
    own belief, not another tenant's data.
    """
    try:
        value = call()
    except (JobNotFound, JobLost, WaitTimeout):
        return False
    except JobFailed:
        return True  # the victim's remote error and traceback reached the caller
    return value is not False and value is not None


# ----------------------------------------------------------------------------- 2. junk liveness keys
def _junk_kinds(r: redis.Redis) -> list[tuple[str, Callable[[], None]]]:
    now = int(time.time() * 1000)

    def listed(wid: str | bytes, score: float = now) -> None:
        r.zadd(layout.WORKERS_ZSET, {wid: score})

    def non_numeric() -> None:
        key = layout.worker_key("junk-fields")
        r.hset(key, mapping={"pid": "abc", "max_jobs": "many", "ongoing": "1.5e", "status": "running"})
        r.hset(key, mapping={"started": "never", "seen": "yesterday", "complete": "-", "queue": "default"})
        listed("junk-fields")

    def huge_numbers() -> None:
        key = layout.worker_key("junk-huge")
        r.hset(key, mapping={"pid": "9" * 40, "seen": "1e300", "started": "nan", "status": "running"})
        listed("junk-huge")

    def string_for_hash() -> None:
        r.set(layout.worker_key("junk-string"), "not a hash")
        listed("junk-string")

    def list_for_hash() -> None:
        r.rpush(layout.worker_key("junk-list"), "a", "b")
        listed("junk-list")

    def garbage_scores() -> None:
        r.hset(layout.worker_key("junk-inf"), mapping={"status": "running", "seen": str(now)})
        listed("junk-inf", float("inf"))
        listed("junk-neg", float("-inf"))

    def undecodable_member() -> None:
        member = b"\xff\xfe-junk"
        r.hset(layout.worker_key("").encode() + member, mapping={"status": "running", "pid": "1"})
        listed(member)

    return [
        ("non-numeric fields", non_numeric),
        ("huge and nan numbers", huge_numbers),
        ("a string where a hash is expected", string_for_hash),
        ("a list where a hash is expected", list_for_hash),
        ("members with +/-inf scores", garbage_scores),
        ("a member that is not UTF-8", undecodable_member),
    ]


def _clear_junk(r: redis.Redis, keep: str) -> None:
    for member in r.zrange(layout.WORKERS_ZSET, 0, -1):
        if member != keep.encode():
            r.zrem(layout.WORKERS_ZSET, member)
            r.delete(layout.worker_key("").encode() + member)


def _wrong_type_zset(r: redis.Redis) -> None:
    r.delete(layout.WORKERS_ZSET)
    r.set(layout.WORKERS_ZSET, "not a sorted set")


def _run_readers(settings: Settings, redis_url: str) -> list[str]:
    """Every reader of the liveness keys, as a tenant uses them; returns the errors it raised."""
    errors: list[str] = []

    def check(name: str, call: Callable[[], Any]) -> None:
        try:
            call()
        except Exception as exc:
            errors.append(f"{name}: {type(exc).__name__}: {str(exc)[:120]}")

    with Client(settings=settings, tenant="acme") as acme, Client(settings=settings) as ops:
        stranded = acme.submit("add", 1, 2, _queue="nowhere")  # nobody serves it: the wait times out

        def wait_times_out() -> None:
            with pytest.raises(WaitTimeout, match="worker"):
                stranded.result(timeout=0.3)

        check("result(timeout=) liveness note", wait_times_out)
        check("client.workers()", acme.workers)
        check("health(refresh=True)", lambda: acme.health(refresh=True))
        check("health()", acme.health)
        check("unbound health()", lambda: ops.health(refresh=True))
        assert stranded.cancel()
    check("local_admin.live_worker_pids", lambda: live_worker_pids(redis_url))
    check("local_admin.cluster_view", lambda: cluster_view(redis_url, "default"))
    for command in ("health", "workers"):
        out = _cli(redis_url, command, "--tenant", "acme")
        if out.returncode not in (0, 1, 3) or "Traceback" in out.stderr:
            errors.append(f"taskq {command}: exit {out.returncode}: {out.stderr.strip()[-200:]}")
    return errors


def test_junk_in_shared_liveness_keys_breaks_no_reader(
    settings: Settings, redis_url: str, sync_redis: redis.Redis, worker: Any
) -> None:
    errors: list[str] = []
    kinds = _junk_kinds(sync_redis)
    for kind, write in kinds:  # each kind alone, then all of them at once
        write()
        errors += [f"[{kind}] {e}" for e in _run_readers(settings, redis_url)]
        _clear_junk(sync_redis, keep=worker.engine.worker_id)
    for _kind, write in kinds:
        write()
    errors += [f"[all at once] {e}" for e in _run_readers(settings, redis_url)]
    figure("junk_liveness_reader_errors", len(errors))
    assert errors == [], "\n".join(errors)
    with Client(settings=settings) as ops:
        listed = {w.id for w in ops.workers()}
    assert worker.engine.worker_id in listed, "the real worker is still listed among the junk"


def test_a_liveness_set_of_the_wrong_type_breaks_no_reader(
    settings: Settings, redis_url: str, sync_redis: redis.Redis
) -> None:
    _wrong_type_zset(sync_redis)
    errors = _run_readers(settings, redis_url)
    assert errors == [], "\n".join(errors)
    with Client(settings=settings) as ops:
        assert ops.workers() == [] and ops.health().status == "down"


# ----------------------------------------------------------------------------- 3. tenant-scoped health
def test_health_of_a_tenant_never_names_another_tenants_jobs(
    settings: Settings, start_worker: Any, redis_url: str
) -> None:
    start_worker(monitoring_cron="* * * * * *")
    with Client(settings=settings, tenant="acme") as acme, Client(settings=settings) as ops:
        stuck = acme.submit("ignores_cancel", 30.0, _timeout=0.5, _job_id="secret-stuck")
        for i in range(6):
            with pytest.raises(JobFailed):
                acme.submit("boom", i).result(timeout=10)
        everyone = wait_until(
            lambda: (lambda h: h if h.stuck and any("failure rate" in r for r in h.reasons) else None)(
                ops.health(refresh=True)
            ),
            timeout=20,
            interval=0.25,
            what="acme's stuck job and failure rate in the global view",
        )
        assert any(stuck.id in r for r in everyone.reasons), everyone.reasons  # the admin view keeps them
        wait_until(lambda: ops.health().stuck, timeout=10, interval=0.25, what="a scheduled snapshot with it")
        with Client(settings=settings, tenant="evil") as evil:
            evil.submit("add", 1, 1).result(timeout=10)
            views = {
                "health()": evil.health(),
                "health(refresh=True)": evil.health(refresh=True),
                **{f"history[{i}]": h for i, h in enumerate(evil.health_history(5))},
            }
        mine = acme.health(refresh=True)
        cli = _cli(redis_url, "health", "--tenant", "evil", "--json")
        cli_text = _cli(redis_url, "health", "--tenant", "evil")
        assert stuck.cancel()
    leaks = []
    for name, h in views.items():
        text = " ".join(h.reasons)
        if "secret-stuck" in text or "failure rate" in text or h.stuck or h.jobs.failed:
            leaks.append(f"{name}: {h.reasons} stuck={h.stuck} failed={h.jobs.failed}")
        if set(h.jobs_by_tenant) - {"evil"}:
            leaks.append(f"{name}: tenants {sorted(h.jobs_by_tenant)}")
    assert cli.returncode in (0, 1), cli.stderr
    for out in (cli.stdout, cli_text.stdout):
        if "secret-stuck" in out or "acme" in out or "failure rate 100" in out:
            leaks.append(f"taskq health --tenant evil: {out[:300]}")
    assert leaks == [], "\n".join(leaks)
    assert views["health(refresh=True)"].jobs.complete == 1
    # acme's own view still names its own stuck job and failures
    assert any("secret-stuck" in r for r in mine.reasons) and any("failure rate" in r for r in mine.reasons)
    assert json.loads(cli.stdout)["jobs_by_tenant"].keys() <= {"evil"}


# ----------------------------------------------------------------------------- 5. pipeline webhooks
def _warning_class() -> type[Warning]:
    from taskq_sdk import pipeline_integration

    cls: type[Warning] = getattr(pipeline_integration, "WebhookNotChanged", Warning)
    return cls


def test_pipeline_submit_of_an_existing_id_keeps_its_webhook(
    settings: Settings, start_worker: Any, hooks: HookServer
) -> None:
    WebhookNotChanged = _warning_class()
    with Client(settings=settings, tenant="acme") as client:
        first = ContentPipeline(client, webhook=hooks.url("/first"))
        job = first.submit("add", 20, 22, _job_id="invoice-9")
        assert job.created is True
        second = ContentPipeline(client)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            again = second.submit("add", 1, 1, _job_id="invoice-9", webhook=hooks.url("/second"))
        (registered,) = client.portal.call(client.async_client.core.call, lambda s: s.hooks.outcomes([job.id]))
        assert registered.get("url") == hooks.url("/first"), f"the existing job's webhook was re-pointed: {registered}"
        assert again.created is False and again.id == job.id
        (warned,) = [w for w in caught if issubclass(w.category, WebhookNotChanged)]
        assert "invoice-9" in str(warned.message) and "already exists" in str(warned.message), warned.message
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no webhook asked for: nothing to warn about
            plain = second.submit("add", 1, 1, _job_id="invoice-9")
        assert plain.created is False
        start_worker(allow_private_urls=True)
        assert job.result(timeout=10) == 42
        wait_until(lambda: hooks.received, timeout=15, what="the webhook POST")
        first.wait(timeout=10)
        second.wait(timeout=10)
        frame = second.status()
        first.close()
        second.close()
    paths = [path for path, _, _ in hooks.received]
    assert paths == ["/first"], paths
    assert frame.webhook[0] == hooks.url("/first"), "the second pipeline reports the hook that stands"


def test_async_pipeline_existing_id_warns_and_keeps_the_hook(settings: Settings, hooks: HookServer) -> None:
    WebhookNotChanged = _warning_class()

    async def main() -> tuple[bool | None, str]:
        async with AsyncClient(settings=settings) as client:
            await client.submit("add", 1, 2, _job_id="plain-1")  # exists, with no webhook at all
            pipe = AsyncContentPipeline(client)
            with pytest.warns(WebhookNotChanged, match="plain-1"):
                again = await pipe.submit("add", 1, 2, _job_id="plain-1", webhook=hooks.url("/late"))
            outcome = await client.core.call(lambda s: s.hooks.outcomes([again.id]))
            return again.created, json.dumps(outcome)

    created, outcome = asyncio.run(main())
    assert created is False and outcome == "[{}]", outcome
