"""Server memory per job: queued, finished, and a 100,000-item batch; taskq next to raw arq, same server.

    python -m bench.memory            # --n 10000 --batch 100000

Bytes per job are ``INFO memory``'s ``used_memory`` after minus before (each read once it stopped
moving), divided by the jobs, on an embedded server flushed with ``FLUSHALL SYNC``. "queued": ``--n``
no-op jobs submitted (taskq ``AsyncClient.submit``,
gathered 100 at a time; arq ``enqueue_job``), no worker. "finished": the same jobs after one
worker drained them (taskq keeps the result, the job's metadata as a tombstone and its index
entries; arq keeps its result for ``keep_result=3600``). "batch": ``AsyncClient.map`` of
``--batch`` items, one job per item (``chunk_size=1``), queued. The largest key families of the
queued taskq run are listed with ``MEMORY USAGE`` of one sample each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from functools import partial
from typing import Any

import redis
from arq.connections import RedisSettings, create_pool

from taskq_sdk import AsyncClient
from taskq_sdk.serialization import Codec

from ._harness import arq_worker, server, table, taskq_worker


def used(url: str, settle: float = 3.0) -> int:
    """``used_memory`` once it stopped moving (the server resizes its tables and frees lazily in the background)."""
    r: Any = redis.Redis.from_url(url)
    try:
        last = int(r.info("memory")["used_memory"])
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            time.sleep(0.2)
            now = int(r.info("memory")["used_memory"])
            if now == last:
                break
            last = now
        return last
    finally:
        r.close()


def flush_sync(url: str) -> None:
    """FLUSHALL SYNC: an asynchronous flush frees after the baseline is read (negative bytes per job)."""
    r: Any = redis.Redis.from_url(url)
    try:
        r.execute_command("FLUSHALL", "SYNC")
    finally:
        r.close()


def queue_len(url: str) -> int:
    r: Any = redis.Redis.from_url(url)
    try:
        return int(r.zcard("arq:queue"))
    finally:
        r.close()


async def taskq_submit(url: str, n: int) -> None:
    async with AsyncClient(url) as client:
        for start in range(0, n, 100):
            await asyncio.gather(*(client.submit("noop") for _ in range(min(100, n - start))))


async def taskq_map(url: str, n: int) -> None:
    async with AsyncClient(url) as client:
        await client.map("noop", range(n), chunk_size=1)


async def arq_submit(url: str, n: int) -> None:
    codec = Codec()
    pool = await create_pool(
        RedisSettings.from_dsn(url), job_serializer=codec.serializer, job_deserializer=codec.deserializer
    )
    for start in range(0, n, 100):
        await asyncio.gather(*(pool.enqueue_job("arq_noop") for _ in range(min(100, n - start))))
    await pool.aclose()


def drained(url: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while queue_len(url) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # the last results' writes (batched by the worker) land


def families(url: str) -> list[list[str]]:
    """Key families (the key with its id parts cut) of the server, with one sample's MEMORY USAGE."""
    r: Any = redis.Redis.from_url(url)
    try:
        seen: dict[str, tuple[int, bytes]] = {}
        for key in r.scan_iter(count=1000):
            parts = key.decode().split(":")
            fam = ":".join(p if len(p) < 20 and not p.isdigit() else "*" for p in parts)
            count, sample = seen.get(fam, (0, key))
            seen[fam] = (count + 1, sample)
        rows = []
        for fam, (count, sample) in sorted(seen.items(), key=lambda kv: -kv[1][0]):
            rows.append([f"`{fam}`", f"{count:,}", str(r.memory_usage(sample) or 0), r.type(sample).decode()])
        return rows
    finally:
        r.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=100_000)
    args = ap.parse_args()
    n = args.n
    out: dict[str, float] = {}
    with server() as srv:
        url = srv.url
        for name, submit, worker in (
            ("arq", arq_submit, partial(arq_worker, url, "bench.arq_baseline.Fast")),
            ("taskq", taskq_submit, partial(taskq_worker, url, "bench.noop_jobs")),
        ):
            flush_sync(url)
            base = used(url)
            asyncio.run(submit(url, n))
            out[f"{name} queued"] = (used(url) - base) / n
            if name == "taskq":
                fams = families(url)
            with worker():
                drained(url)
                out[f"{name} finished"] = (used(url) - base) / n
        flush_sync(url)
        base = used(url)
        asyncio.run(taskq_map(url, args.batch))
        out["taskq batch"] = (used(url) - base) / args.batch
        version = srv.version
    rows = []
    for label, key, arq_key in (
        (f"queued ({n:,} jobs, no worker)", "queued", "queued"),
        ("finished (result kept, drained by one worker)", "finished", "finished"),
        (f"batch of {args.batch:,} items, `map(chunk_size=1)`, queued", "batch", "queued"),
    ):
        t, a = out[f"taskq {key}"], out[f"arq {arq_key}"]
        rows.append([label, f"{t:,.0f}", f"{a:,.0f}", f"{t / a:.2f}x"])
        print(f"FIGURE server_bytes_per_job_{key}={t:.0f}")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        table(
            f"Server memory per no-op job (server {version}; load {load})",
            ["state", "taskq B/job", "arq B/job", "taskq / arq"],
            rows,
        )
    )
    print()
    print(table("Key families of the queued taskq run", ["family", "keys", "bytes (one sample)", "type"], fams))


if __name__ == "__main__":
    main()
