"""The listing index is per workspace: a tenant-wide listing merges the workspaces' indexes.

Each job has one index entry (not a tenant-wide one as well: ~90 bytes less per job on the server);
``client.jobs()`` without a workspace still lists every workspace's jobs, newest first, and reads the
tenant-wide index earlier versions wrote while it lives.
"""

from __future__ import annotations

import redis

from taskq_sdk import Client
from taskq_sdk.config import Settings


def test_tenant_wide_listing_merges_the_workspaces_newest_first(settings: Settings, sync_redis: redis.Redis) -> None:
    ids: list[str] = []
    with Client(settings=settings, tenant="acme") as unscoped:
        for ws in ("a", "b", "a", "default", "b"):
            with Client(settings=settings, tenant="acme", workspace=ws) as client:
                ids.append(client.submit("noop").id)
        assert not sync_redis.exists("taskq:t:acme:idx")  # nothing tenant-wide is written per job
        assert sync_redis.smembers("taskq:t:acme:wss") == {b"a", b"b", b"default"}
        assert sync_redis.pttl("taskq:t:acme:wss") > 0
        listed = [j.id for j in unscoped.jobs()]
        assert sorted(listed) == sorted(ids)
        enqueued = [j.enqueued_at for j in unscoped.jobs()]
        assert enqueued == sorted(enqueued, reverse=True)  # newest first across workspaces
        assert [j.id for j in unscoped.jobs(limit=2)] == listed[:2]
        assert {j.id for j in unscoped.jobs(workspace="a")} == {ids[0], ids[2]}
        assert {j.id for j in unscoped.jobs(workspace="b")} == {ids[1], ids[4]}


def test_a_tenant_wide_index_written_by_an_earlier_version_is_still_listed(
    settings: Settings, sync_redis: redis.Redis
) -> None:
    with Client(settings=settings, tenant="acme", workspace="old") as client:
        old = client.submit("noop").id
        new = client.submit("noop").id
    # as an earlier version left it: the job in the tenant-wide index, its workspace not in 'wss'
    score = sync_redis.zscore("taskq:t:acme:idx:old", old)
    sync_redis.delete("taskq:t:acme:idx:old", "taskq:t:acme:wss")
    sync_redis.zadd("taskq:t:acme:idx", {old: score or 0})
    with Client(settings=settings, tenant="acme") as unscoped:
        assert [j.id for j in unscoped.jobs()] == [old]
        with Client(settings=settings, tenant="acme", workspace="old") as client:
            newer = client.submit("noop").id
        assert [j.id for j in unscoped.jobs()] == [newer, old]  # merged: the new index and the old one
        assert new not in {j.id for j in unscoped.jobs()}  # (its entry was deleted above)


def test_index_upkeep_runs_at_most_once_a_minute_and_trims_what_outlived_its_metadata(
    settings: Settings, sync_redis: redis.Redis
) -> None:
    key = "taskq:t:acme:idx:default"
    with Client(settings=settings, tenant="acme") as client:
        client.submit("noop")
        full = sync_redis.pttl(key)
        sync_redis.zadd(key, {"acme:gone-long-ago": 0})  # an entry past its metadata's life
        client.submit("noop")  # the index's lifetime is fresh: no upkeep on this submit
        assert sync_redis.zscore(key, "acme:gone-long-ago") == 0
        sync_redis.pexpire(key, full - 61_000)  # as a minute later
        sync_redis.delete("taskq:t:acme:wss")
        client.submit("noop")
        assert sync_redis.zscore(key, "acme:gone-long-ago") is None
        assert sync_redis.pttl(key) > full - 5_000 and sync_redis.smembers("taskq:t:acme:wss") == {b"default"}
        assert len(client.jobs()) == 3
