"""Tenant names that look like infrastructure (``control``, ``wake``, ``ready``, ``registry``...) own nothing shared.

A tenant's ACL user is granted the patterns of its own keys and channels. When tenant keys were
``taskq:<tenant>:...``, a tenant named ``control`` was granted ``taskq:control:*`` - every queue's
cancel channel - and ``wake``, ``ready`` and ``registry`` likewise owned every queue's hand-overs,
idle workers and served names. Tenant keys now live under ``taskq:t:<tenant>:``, which no shared
key uses; here each such tenant attacks a victim tenant's queue the ways that used to work.
"""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest
import redis

from taskq_sdk import Client
from taskq_sdk._backend import layout
from taskq_sdk.security import create_tenant_user

from .conftest import FAST, figure, wait_until

pytestmark = pytest.mark.security

HOSTILE = ("control", "wake", "ready", "registry", "workers", "worker", "sched", "monitoring", "t")


@pytest.fixture
def users(redis_url: str) -> Any:
    admin = redis.Redis.from_url(redis_url)
    urls = {t: create_tenant_user(admin, t, password=f"{t}-pw-123456", base_url=redis_url) for t in ("acme", *HOSTILE)}
    yield urls
    for t in urls:
        admin.execute_command("ACL", "DELUSER", t)
    admin.close()


def test_infrastructure_looking_tenant_names_reach_no_shared_key(
    users: dict[str, str], start_worker_process: Any, sync_redis: redis.Redis
) -> None:
    worker = start_worker_process(env={"REDIS_URL": users["acme"], "TASKQ_QUEUE": "acme"})
    with Client(users["acme"], tenant="acme", queue="acme", **FAST) as acme:
        running = acme.submit("sleeper", 3.0)
        waiting = acme.submit("add", 1, 1, _defer_by=3600)
        wait_until(lambda: running.status().value == "in_progress", what="victim's job running")
        wid = next(w.decode() for w in sync_redis.zrange(layout.WORKERS_ZSET, 0, -1) if f":{worker.pid}:" in w.decode())
        blob = sync_redis.get(layout.job_key(waiting.id))
        forged_push = layout.PUSH_MAGIC + msgpack.packb([waiting.id, 0, blob, 1, 0, None, f"3000|1|{wid}"])
        allowed: list[str] = []
        tried = 0
        for tenant in HOSTILE:
            raw = redis.Redis.from_url(users[tenant])
            attacks = {
                "cancel a running job": lambda r=raw: r.publish(
                    layout.control_channel("acme"), json.dumps({"e": "cancel", "id": running.id})
                ),
                "forge a hand-over": lambda r=raw: r.publish(layout.push_channel("acme", wid), forged_push),
                "wake the queue's workers": lambda r=raw: r.publish(layout.wake_channel("acme"), '{"e": "wake"}'),
                "take an idle worker's offer": lambda r=raw: r.zpopmax(layout.ready_key("acme")),
                "rewrite the served names": lambda r=raw: r.hset(layout.registry_key("acme"), "evil", 1),
                "read the victim's job": lambda r=raw: r.hgetall(layout.meta_key(running.id)),
                "claim the victim's job": lambda r=raw: r.set(layout.in_progress_key(waiting.id), "x"),
                "listen to the victim's events": lambda r=raw: r.execute_command(
                    "SUBSCRIBE", layout.job_channel(running.id)
                ),
            }
            for what, attack in attacks.items():
                tried += 1
                try:
                    attack()
                    allowed.append(f"{tenant}: {what}")
                except redis.exceptions.NoPermissionError:
                    pass
            raw.close()
        assert running.result(timeout=30) == 3.0, "the victim's running job was not cancelled"
        assert waiting.status().value == "deferred", "the victim's waiting job did not run"
    figure("reserved_looking_tenant_attacks_tried", tried)
    figure("reserved_looking_tenant_attacks_allowed", len(allowed))
    assert not allowed, "\n".join(allowed)


def test_every_shared_key_family_is_outside_every_tenant_namespace() -> None:
    """Whatever a tenant is named, its patterns match none of the shared keys and channels."""
    import fnmatch

    shared = [
        layout.wake_channel("q"),
        layout.push_channel("q", "w1"),
        layout.ready_key("q"),
        layout.control_channel("q"),
        layout.registry_key("q"),
        layout.WORKERS_ZSET,
        layout.worker_key("w1"),
        layout.HISTORY_KEY,
        layout.schedule_key("nightly"),
        layout.queue_key("q"),
        layout.abort_key("q"),
    ]
    for tenant in (*HOSTILE, "q", "arq", "taskq", "abort"):
        keys, channels = layout.tenant_acl_patterns(tenant, tenant)
        own = [p for p in keys + channels if p.startswith(layout.TENANT_NS)]
        assert own, tenant
        for pattern in own:
            hits = [k for k in shared if fnmatch.fnmatchcase(k, pattern)]
            assert not hits, f"tenant {tenant!r}: {pattern} covers {hits}"
