"""The submit scripts' cases beyond a new id: ids used before, taken ids, repeats, mixed rows in one call.

SUBMIT (and a keyed BULK_SUBMIT) read the keys of up to 100 rows with one EXISTS and skip the per-row
checks and clean-up when none exists; these tests pin down what the checks and the clean-up still do
when something does exist, and that rows sharing a call (queue entries, index entries, 'enq' counts
written once per run of rows) end as separate calls would. They pass on the scripts before that change too.
"""

from __future__ import annotations

import asyncio
import time

import redis
from redis.asyncio import Redis

from taskq_sdk._backend.batches import BatchStore, BulkHeader, pack_rows
from taskq_sdk._backend.store import Store, SubmitRow
from taskq_sdk.config import Settings
from taskq_sdk.serialization import Codec


def _row(job_id: str, **kw: object) -> SubmitRow:
    now = int(time.time() * 1000)
    fields: dict[str, object] = {
        "job_id": job_id,
        "function": "noop",
        "job_bytes": b"job-" + job_id.encode(),
        "queue": "default",
        "workspace": "default",
        "score_ms": now,
        "job_ttl_ms": 86_400_000,
        "timeout": None,
        "max_tries": None,
        "state": "queued",
        "args_repr": "noop()",
    }
    fields.update(kw)
    return SubmitRow(**fields)  # type: ignore[arg-type]


def _submit(settings: Settings, rows: list[SubmitRow], reply_to: str = "") -> list[bool]:
    async def main() -> list[bool]:
        r = Redis.from_url(settings.url())
        try:
            return await Store(r, Codec(), settings).submit(rows, wake_queue="default", reply_to=reply_to)
        finally:
            await r.aclose()

    return asyncio.run(main())


def _enq(r: redis.Redis, tenant: str, ws: str, fn: str) -> int:
    return int(r.hget(f"taskq:t:{tenant}:m:all", f"{ws}|{fn}|enq") or 0)


def test_an_id_used_before_starts_clean(settings: Settings, sync_redis: redis.Redis) -> None:
    # what an earlier job of this id left after its definition and result expired
    mk = "taskq:t:default:job:again-1"
    sync_redis.hset(mk, mapping={"state": "failed", "err": "Boom", "attempt": 3, "worker": "w9"})
    sync_redis.set("arq:retry:again-1", 3)
    sync_redis.rpush("taskq:t:default:logs:again-1", "old line")
    sync_redis.zadd("arq:abort", {"again-1": 1, "someone-else": 2})
    assert _submit(settings, [_row("again-1")], reply_to="c1") == [True]
    meta = sync_redis.hgetall(mk)
    assert meta[b"state"] == b"queued" and meta[b"rc"] == b"c1"
    assert not {b"err", b"attempt", b"worker"} & set(meta)
    assert not sync_redis.exists("arq:retry:again-1", "taskq:t:default:logs:again-1")
    assert sync_redis.zrange("arq:abort", 0, -1) == [b"someone-else"]  # only this id's cancel request goes
    assert sync_redis.get("arq:job:again-1") == b"job-again-1"
    assert sync_redis.pttl(mk) > 0


def test_taken_ids_among_new_ones_are_left_alone(settings: Settings, sync_redis: redis.Redis) -> None:
    sync_redis.set("arq:job:taken-1", b"the first one", px=60_000)
    sync_redis.set("arq:result:taken-2", b"its result", px=60_000)
    rows = [_row("new-1"), _row("taken-1"), _row("taken-2"), _row("new-2")]
    assert _submit(settings, rows) == [True, False, False, True]
    assert sync_redis.get("arq:job:taken-1") == b"the first one"
    assert not sync_redis.exists("taskq:t:default:job:taken-1", "taskq:t:default:job:taken-2")
    assert sorted(sync_redis.zrange("arq:queue", 0, -1)) == [b"new-1", b"new-2"]
    assert sorted(sync_redis.zrange("taskq:t:default:idx:default", 0, -1)) == [b"new-1", b"new-2"]
    assert _enq(sync_redis, "default", "default", "noop") == 2


def test_an_id_given_twice_in_one_call_is_created_once(settings: Settings, sync_redis: redis.Redis) -> None:
    first, second = _row("twice-1"), _row("twice-1", job_bytes=b"second")
    assert _submit(settings, [first, second, _row("once-1")]) == [True, False, True]
    assert sync_redis.get("arq:job:twice-1") == b"job-twice-1"
    assert _enq(sync_redis, "default", "default", "noop") == 2
    assert sync_redis.zcard("arq:queue") == 2


def test_new_ids_beside_another_jobs_cancel_request(settings: Settings, sync_redis: redis.Redis) -> None:
    sync_redis.zadd("arq:abort", {"running-elsewhere": 1})
    assert _submit(settings, [_row("fresh-1"), _row("fresh-2")]) == [True, True]
    assert sync_redis.zrange("arq:abort", 0, -1) == [b"running-elsewhere"]
    assert sync_redis.zcard("arq:queue") == 2


def test_one_call_of_mixed_rows_ends_as_separate_calls_would(settings: Settings, sync_redis: redis.Redis) -> None:
    later = int(time.time() * 1000) + 600_000
    sync_redis.hset("taskq:t:acme:job:acme:old-1", "state", "failed")
    rows = [
        _row("acme:m1"),
        _row("acme:m2", workspace="lab", function="add", max_tries=3),
        _row("acme:m3", workspace="lab", function="add", queue="other", score_ms=later),
        _row("plain-1", timeout=5.0),
        _row("acme:m4", retry_of="acme:old-1", batch="b1"),
        _row("acme:m5"),
    ]
    assert _submit(settings, rows) == [True] * 6
    assert sorted(sync_redis.zrange("arq:queue", 0, -1)) == [b"acme:m1", b"acme:m2", b"acme:m4", b"acme:m5", b"plain-1"]
    assert sync_redis.zrange("arq:queue:other", 0, -1, withscores=True) == [(b"acme:m3", float(later))]
    assert sorted(sync_redis.zrange("taskq:t:acme:idx:default", 0, -1)) == [b"acme:m1", b"acme:m4", b"acme:m5"]
    assert sorted(sync_redis.zrange("taskq:t:acme:idx:lab", 0, -1)) == [b"acme:m2", b"acme:m3"]
    assert sync_redis.zrange("taskq:t:default:idx:default", 0, -1) == [b"plain-1"]
    assert sync_redis.smembers("taskq:t:acme:wss") == {b"default", b"lab"}
    for key in ("taskq:t:acme:idx:default", "taskq:t:acme:idx:lab", "taskq:t:acme:wss", "taskq:t:default:wss"):
        assert sync_redis.pttl(key) > 0, key
    assert _enq(sync_redis, "acme", "default", "noop") == 3
    assert _enq(sync_redis, "acme", "lab", "add") == 2
    assert _enq(sync_redis, "default", "default", "noop") == 1
    minute = int(sync_redis.hget("taskq:t:acme:job:acme:m1", "enq") or 0) // 60_000
    assert int(sync_redis.hget(f"taskq:t:acme:m:{minute}", "lab|add|enq") or 0) == 2
    assert sync_redis.pttl(f"taskq:t:acme:m:{minute}") > 0 and sync_redis.pttl("taskq:t:acme:m:all") > 0
    deferred = sync_redis.hgetall("taskq:t:acme:job:acme:m3")
    assert deferred[b"sched"] == str(later).encode() and deferred[b"queue"] == b"arq:queue:other"
    assert b"sched" not in sync_redis.hgetall("taskq:t:acme:job:acme:m1")
    assert sync_redis.hget("taskq:t:acme:job:acme:m2", "max_tries") == b"3"
    assert sync_redis.hget("taskq:t:default:job:plain-1", "timeout") == b"5.0"
    assert sync_redis.hget("taskq:t:acme:job:acme:m4", "batch") == b"b1"
    assert sync_redis.hget("taskq:t:acme:job:acme:old-1", "retried_by") == b"acme:m4"


def _bulk(settings: Settings, rows: list[object], *, fresh: bool) -> bytes:
    async def main() -> bytes:
        r = Redis.from_url(settings.url())
        try:
            now = int(time.time() * 1000)
            header = BulkHeader("default", "default", "noop", None, None, "queued", now, 86_400_000, 90_000_000, "b1")
            return await BatchStore(r, Codec()).submit(header, [pack_rows(rows)], now=now, fresh=fresh)
        finally:
            await r.aclose()

    return asyncio.run(main())


def test_a_keyed_bulk_submit_checks_ids_as_submit_does(settings: Settings, sync_redis: redis.Redis) -> None:
    sync_redis.hset("taskq:t:default:job:k-old", mapping={"state": "failed", "err": "Boom"})
    sync_redis.set("arq:retry:k-old", 2)
    sync_redis.zadd("arq:abort", {"k-old": 1})
    sync_redis.set("arq:job:k-taken", b"kept", px=60_000)
    ids = [f"k-{n}" for n in range(150)]  # the id used before and the taken one sit in the second group of 100
    ids[120], ids[130], ids[5] = "k-old", "k-taken", "k-4"  # and k-4 is given twice
    rows: list[object] = []
    for job_id in ids:
        rows += [job_id, b"job-" + job_id.encode(), "noop()"]
    flags = _bulk(settings, rows, fresh=False)
    assert flags[5:6] == b"0" and flags[120:121] == b"1" and flags[130:131] == b"0"
    assert flags.count(b"1") == 148
    assert sync_redis.get("arq:job:k-taken") == b"kept"
    assert sync_redis.hget("taskq:t:default:job:k-old", "state") == b"queued"
    assert not sync_redis.hexists("taskq:t:default:job:k-old", "err") and not sync_redis.exists("arq:retry:k-old")
    assert sync_redis.zcard("arq:abort") == 0
    assert sync_redis.zcard("arq:queue") == 148 and _enq(sync_redis, "default", "default", "noop") == 148
