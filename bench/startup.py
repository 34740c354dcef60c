"""Start-up: worker process spawn -> first result, and ``LocalCluster(n_workers=2)`` -> first result.

    python -m bench.startup            # --rounds 5

A no-op job is queued first; then the worker process is spawned (``python -m taskq_sdk.worker
bench.noop_jobs``, or ``arq bench.arq_baseline.Fast`` for raw arq) and the time until its result
exists on the server is taken (read with a 2 ms poll by this process, which does not compete with
the worker for long). Import time of ``taskq_sdk.worker`` (``python -X importtime``'s total) is
printed too. ``LocalCluster`` is timed from the constructor call to the first result of
``client.submit("noop")``: the embedded server, two worker subprocesses, the client. Rounds
alternate taskq and arq; medians.

Byte-code first: the sources of ``taskq_sdk`` and ``bench`` are compiled (``compileall``) before any
timing, as ``pip install`` does for a wheel; arq is measured from its installed, compiled package. With
``PYTHONDONTWRITEBYTECODE=1`` in the environment (as on this machine) a source checkout otherwise
compiles every module on every spawn, which doubled the taskq figure (0.45 s vs 0.22 s, same run).
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import os
import subprocess
import sys
import time

import redis
from arq.connections import RedisSettings, create_pool

from taskq_sdk import AsyncClient
from taskq_sdk.serialization import Codec

from ._harness import ROOT, clean_env, flush, median, server, table

POLL = 0.002


def _first_result(url: str, cmd: list[str], ready: str, timeout: float = 30.0) -> float:
    """Spawn ``cmd`` and return seconds until a key matching ``ready`` exists (the job's result)."""
    r = redis.Redis.from_url(url)
    proc = subprocess.Popen(cmd, env=clean_env(url), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.perf_counter()
    try:
        while not r.keys(ready):
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd} exited with {proc.returncode}")
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError(f"{cmd}: no result after {timeout:.0f} s")
            time.sleep(POLL)
        return time.perf_counter() - t0
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        r.close()


def taskq_worker_start(url: str) -> float:
    flush(url)

    async def queue() -> None:
        async with AsyncClient(url) as client:
            await client.submit("noop")

    asyncio.run(queue())
    return _first_result(url, [sys.executable, "-m", "taskq_sdk.worker", "bench.noop_jobs"], "arq:result:*")


def arq_worker_start(url: str) -> float:
    flush(url)
    codec = Codec()

    async def queue() -> None:
        pool = await create_pool(
            RedisSettings.from_dsn(url), job_serializer=codec.serializer, job_deserializer=codec.deserializer
        )
        await pool.enqueue_job("arq_noop")
        await pool.aclose()

    asyncio.run(queue())
    return _first_result(url, [sys.executable, "-m", "arq", "bench.arq_baseline.Fast"], "arq:result:*")


def local_cluster_start() -> float:
    code = (
        "import time; t0 = time.perf_counter()\n"
        "from taskq_sdk import LocalCluster\n"
        "with LocalCluster(n_workers=2, jobs=['bench.noop_jobs']) as cluster:\n"
        "    with cluster.client() as client:\n"
        "        client.submit('noop').result(timeout=60)\n"
        "        print(time.perf_counter() - t0)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ARQ_", "TASKQ_"))}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    if out.returncode:
        raise RuntimeError(out.stderr[-1500:])
    return float(out.stdout.strip().splitlines()[-1])


def import_seconds(module: str) -> float:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True, text=True, timeout=60
    )
    total = 0
    for line in out.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[2].strip() == module:
            total = int(parts[1])
    return total / 1e6


def compile_sources() -> None:
    """Write the byte-code of taskq_sdk and bench, as installing a wheel does (see the module docstring)."""
    for package in ("taskq_sdk", "bench"):
        if not compileall.compile_dir(ROOT / package, quiet=1):
            raise RuntimeError(f"compileall failed for {package}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--source-only", action="store_true", help="skip compileall (time a checkout without .pyc)")
    args = ap.parse_args()
    if not args.source_only:
        compile_sources()
    runs: dict[str, list[float]] = {"taskq": [], "arq": [], "cluster": [], "import": []}
    with server() as srv:
        for _ in range(args.rounds):
            runs["arq"].append(arq_worker_start(srv.url))
            runs["taskq"].append(taskq_worker_start(srv.url))
            runs["import"].append(import_seconds("taskq_sdk.worker"))
        version = srv.version
    for _ in range(max(1, args.rounds // 2)):
        runs["cluster"].append(local_cluster_start())
    rows = [
        ["arq worker (`arq bench.arq_baseline.Fast`): spawn -> first result", f"{median(runs['arq']):.3f}"],
        ["taskq worker (`python -m taskq_sdk.worker`): spawn -> first result", f"{median(runs['taskq']):.3f}"],
        ["`import taskq_sdk.worker` (-X importtime)", f"{median(runs['import']):.3f}"],
        ["`LocalCluster(n_workers=2)` -> first result (server, 2 workers, client)", f"{median(runs['cluster']):.3f}"],
    ]
    for key, name in (("taskq", "worker_spawn_to_first_result_s"), ("arq", "arq_worker_spawn_to_first_result_s")):
        print(f"FIGURE {name}={median(runs[key]):.3f}")
    print(f"FIGURE local_cluster_to_first_result_s={median(runs['cluster']):.3f}")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(table(f"Start-up (median of {args.rounds}; server {version}; load {load})", ["what", "seconds"], rows))


if __name__ == "__main__":
    main()
