"""Per-tenant ACL users on the real server: a tenant's credentials cannot reach another tenant's jobs."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from taskq_sdk import Client, JobNotFound
from taskq_sdk.security import create_tenant_user

from .conftest import FAST, figure

pytestmark = pytest.mark.security


@pytest.fixture
def tenant_urls(redis_url: str) -> dict[str, str]:
    admin = redis.Redis.from_url(redis_url)
    urls = {t: create_tenant_user(admin, t, password=f"{t}-pw-123", base_url=redis_url) for t in ("acme", "globex")}
    yield urls
    for t in urls:
        admin.execute_command("ACL", "DELUSER", t)
    admin.close()


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
            lambda: raw.hgetall(f"taskq:globex:job:{g.id}"),
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
