"""Scaling: drain and latency over 0 / 0.5 / 2 ms round trips vs raw arq, 1/2/4 workers, server CPU per job.

    python -m bench.scaling       # --n 3000 --latency-n 100 --rtt 0 0.5 2 --workers 1 2 4 --repeat 3 (~10 min)

Four tables, each measuring taskq and raw arq (worker polling at 5 ms, the SDK's codec) in one run:

1. **Network round trip.** Workers and clients reach the server through `bench/delay_proxy.py`,
   which delays each direction by half the round trip (this machine has no `tc netem`); the delay
   is calibrated so a PING takes the target RTT, and the table prints the PING measured. Drain is N
   queued no-op jobs, one worker process; latency is submit -> result of one job, warm idle worker.
   The proxy is one Python process: its CPU share is printed, a share near 100 % means it, not the
   system under test, set the pace.
2. **Worker processes.** Drain rate with 1, 2, 4 worker processes (2 cores here: past 2, processes
   share cores), and a worker added while a batch drains.
3. **Server CPU per job**, from the server's own `INFO cpu` (main thread) and `INFO commandstats`
   over the enqueue and the drain: the commands a job costs, and where one primary's main thread
   saturates (1 s of CPU divided by the CPU a job costs it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, cast

import redis

from ._harness import arq_worker, clean_env, cpu_seconds, flush, percentile, process, server, table, taskq_worker
from .delay_proxy import DelayProxy
from .drain import enqueue_arq, enqueue_taskq, wait_drained
from .latency import raw_arq, taskq_async

# ------------------------------------------------------------------------------ server CPU


def _main_thread_cpu(r: redis.Redis) -> float:
    info = cast(dict[str, Any], r.info("cpu"))
    if "used_cpu_user_main_thread" in info:
        return float(info["used_cpu_user_main_thread"]) + float(info["used_cpu_sys_main_thread"])
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _commandstats(r: redis.Redis) -> dict[str, tuple[int, int]]:
    return {
        k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
        for k, v in cast(dict[str, Any], r.info("commandstats")).items()
    }


class ServerMeter:
    """Server main-thread CPU seconds and per-command calls/usec between ``start()`` and ``stop()``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.cpu = 0.0
        self.commands: dict[str, tuple[int, int]] = {}

    @contextmanager
    def measure(self) -> Iterator[ServerMeter]:
        r = redis.Redis.from_url(self.url)
        cpu0, cmd0 = _main_thread_cpu(r), _commandstats(r)
        try:
            yield self
        finally:
            cpu1, cmd1 = _main_thread_cpu(r), _commandstats(r)
            r.close()
            self.cpu += cpu1 - cpu0
            for name, (calls, usec) in cmd1.items():
                c0, u0 = cmd0.get(name, (0, 0))
                old = self.commands.get(name, (0, 0))
                if calls - c0:
                    self.commands[name] = (old[0] + calls - c0, old[1] + usec - u0)


# ------------------------------------------------------------------------------ network round trips


def _ping_rtt_ms(host: str, port: int, password: str, n: int = 300) -> float:
    r = redis.Redis(host=host, port=port, password=password)
    r.ping()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        r.ping()
        samples.append(time.perf_counter() - t0)
    r.close()
    return statistics.median(samples) * 1000


@contextmanager
def reach(srv: Any, rtt_ms: float) -> Iterator[tuple[str, float, DelayProxy | None]]:
    """(url, measured PING RTT ms, proxy) for a target RTT: the server itself at 0, else a calibrated proxy."""
    if rtt_ms == 0:
        yield srv.url, _ping_rtt_ms(srv.host, srv.port, srv.password), None
        return
    delay = rtt_ms / 2
    for _ in range(3):  # the proxy's own cost (~0.1-0.3 ms RTT here) is taken out of the delay
        with DelayProxy(srv.host, srv.port, delay_ms=delay) as probe:
            measured = _ping_rtt_ms(srv.host, probe.port, srv.password)
        if abs(measured - rtt_ms) < 0.05 * rtt_ms:
            break
        delay = max(0.0, delay - (measured - rtt_ms) / 2)
    with DelayProxy(srv.host, srv.port, delay_ms=delay) as proxy:
        url = f"redis://:{srv.password}@{srv.host}:{proxy.port}/0"
        yield url, _ping_rtt_ms(srv.host, proxy.port, srv.password), proxy


def _share(proxy: DelayProxy | None, run: Callable[[], Any]) -> tuple[Any, str]:
    """Run ``run()``; also return the proxy's CPU share meanwhile (or "-" without a proxy)."""
    if proxy is None:
        return run(), "-"
    c0, t0 = cpu_seconds(proxy.pid), time.monotonic()
    value = run()
    return value, f"{(cpu_seconds(proxy.pid) - c0) / (time.monotonic() - t0):.0%}"


def _worker(kind: str, url: str, r: redis.Redis, nth: int) -> Any:
    """The ``nth`` worker process of ``kind``, ready once it is up: the taskq one heart-beats as the ``nth``
    registered worker, the arq one has a socket open (it connects after its imports)."""
    if kind == "taskq":
        cmd = [sys.executable, "-m", "taskq_sdk.worker", "bench.noop_jobs"]
        return process(cmd, clean_env(url), lambda: cast(int, r.zcard("taskq:workers")) >= nth)
    cmd = [sys.executable, "-m", "arq", "bench.arq_baseline.Fast"]
    return process(cmd, clean_env(url), ready_proc=lambda proc: _has_socket(proc.pid))


def _has_socket(pid: int) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                return True
        except OSError:
            continue
    return False


def drain_rate(
    direct: str, via: str, n: int, kind: str, workers: int = 1, cost: list[tuple[float, float]] | None = None
) -> float:
    """N no-op jobs drained by ``workers`` processes reaching the server through ``via``: N / (first start - last
    finish), read from the results.

    Without ``cost``: the jobs are queued first (directly), then the workers start (as bench.drain does).
    With ``cost``: the workers start first (so that every one of them is up for the whole batch), then the
    jobs are queued, and (worker CPU us/job, server main-thread CPU us/job, enqueue included) is appended:
    CPU time, unlike the rate, does not depend on how much of the machine other processes take.
    """
    flush(direct)
    r = redis.Redis.from_url(direct)

    def enqueue() -> None:
        asyncio.run(enqueue_taskq(direct, n) if kind == "taskq" else enqueue_arq(direct, n))

    with ExitStack() as stack:
        if cost is None:
            enqueue()
        procs = [stack.enter_context(_worker(kind, via, r, k + 1)) for k in range(workers)]
        worker0, server0 = sum(cpu_seconds(p.pid) for p in procs), _main_thread_cpu(r)
        if cost is not None:
            enqueue()
            _wait_queue_empty(direct, timeout=900)
            worker1, server1 = sum(cpu_seconds(p.pid) for p in procs), _main_thread_cpu(r)
            cost.append(((worker1 - worker0) / n * 1e6, (server1 - server0) / n * 1e6))
        r.close()
        return wait_drained(direct, n, timeout=900)


def latency_p50(direct: str, via: str, n: int, kind: str) -> float:
    flush(direct)
    if kind == "taskq":
        with taskq_worker(via, "bench.noop_jobs"):
            samples = taskq_async(via, n)
    else:
        with arq_worker(via, "bench.arq_baseline.Fast"):
            samples = raw_arq(via, n, 0.005)
    return percentile(samples, 0.5) * 1000


def interleaved(runs: dict[str, Callable[[], float]], repeat: int) -> dict[str, list[float]]:
    """Each run ``repeat`` times, in order A B .. then .. B A, so a drifting machine load hits all alike."""
    out: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for rep in range(repeat):
        for name in names if rep % 2 == 0 else names[::-1]:
            out[name].append(runs[name]())
    return out


def spread(values: list[float], fmt: str = ",.0f") -> str:
    """The median, and the range when there is more than one value: ``1,234 (1,100-1,300)``."""
    med = statistics.median(values)
    if len(values) == 1:
        return format(med, fmt)
    return f"{format(med, fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def network_table(srv: Any, rtts: list[float], n: int, latency_n: int, repeat: int) -> str:
    rows = []
    for rtt in rtts:
        with reach(srv, rtt) as (via, measured, proxy):
            shares: dict[str, list[str]] = {"arq": [], "taskq": []}

            def drain(kind: str, shares: dict[str, list[str]] = shares) -> float:
                rate, share = _share(proxy, lambda: drain_rate(srv.url, via, n, kind))
                shares[kind].append(share)
                return float(rate)

            got = interleaved(
                {
                    "arq drain": lambda: drain("arq"),
                    "taskq drain": lambda: drain("taskq"),
                    "arq latency": lambda: latency_p50(srv.url, via, latency_n, "arq"),
                    "taskq latency": lambda: latency_p50(srv.url, via, latency_n, "taskq"),
                },
                repeat,
            )
        med = {k: statistics.median(v) for k, v in got.items()}
        label = f"{rtt:g} ms (PING {measured:.2f} ms)"
        for kind, name in (("arq", "arq, polling at 5 ms"), ("taskq", "taskq worker + AsyncClient")):
            rows.append(
                [
                    label,
                    name,
                    spread(got[f"{kind} drain"]),
                    max(shares[kind]),
                    spread(got[f"{kind} latency"], ".2f"),
                    f"{med[f'{kind} drain'] / med['arq drain']:.2f}x",
                    f"{med['arq latency'] / med[f'{kind} latency']:.2f}x",
                ]
            )
            print(f"FIGURE scaling_drain_jobs_per_s[rtt={rtt:g}ms,{kind}]={med[f'{kind} drain']:.0f}")
            print(f"FIGURE scaling_latency_p50_ms[rtt={rtt:g}ms,{kind}]={med[f'{kind} latency']:.2f}")
    return table(
        f"Round trips: drain of {n:,} no-op jobs (1 worker process, max_jobs=10) and submit -> result p50 "
        f"({latency_n} jobs), through a delay proxy; median (range) of {repeat} interleaved runs; "
        f"load average {os.getloadavg()[0]:.1f}",
        ["RTT", "system", "drain jobs/s", "proxy CPU (max)", "latency p50 ms", "drain vs arq", "latency vs arq"],
        rows,
    )


# ------------------------------------------------------------------------------ worker processes


def added_mid_batch(url: str, n: int) -> tuple[float, float]:
    """Rate with one worker for the first ~40 %, then with a second one added."""
    flush(url)
    asyncio.run(enqueue_taskq(url, n))
    r = redis.Redis.from_url(url)

    def done() -> int:
        return n - cast(int, r.zcard("arq:queue"))

    with ExitStack() as stack:
        stack.enter_context(taskq_worker(url, "bench.noop_jobs"))
        t0, d0 = time.monotonic(), done()
        while done() < 0.4 * n:
            time.sleep(0.05)
        t1, d1 = time.monotonic(), done()
        stack.enter_context(taskq_worker(url, "bench.noop_jobs"))
        t2, d2 = time.monotonic(), done()
        while r.zcard("arq:queue"):
            time.sleep(0.05)
        t3 = time.monotonic()
    r.close()
    if n - d2 < 0.1 * n:  # the batch was (nearly) done before the second worker came up: nothing to say
        return (d1 - d0) / (t1 - t0), 0.0
    return (d1 - d0) / (t1 - t0), (n - d2) / (t3 - t2)


def workers_table(url: str, n: int, counts: list[int], repeat: int) -> str:
    runs: dict[str, Callable[[], float]] = {}
    costs: dict[str, list[tuple[float, float]]] = {}
    for w in counts:
        for kind in ("taskq", "arq"):
            key = f"{kind} {w}"
            costs[key] = []
            runs[key] = lambda w=w, kind=kind, c=costs[key]: drain_rate(url, url, n, kind, w, c)  # type: ignore[misc]
    got = interleaved(runs, repeat)
    one = statistics.median(got[f"taskq {counts[0]}"])
    rows = []

    def cpu(key: str) -> str:
        worker = statistics.median(c[0] for c in costs[key])
        server = statistics.median(c[1] for c in costs[key])
        return f"{worker:,.0f} / {server:,.0f}"

    for w in counts:
        tq = statistics.median(got[f"taskq {w}"])
        print(f"FIGURE scaling_drain_jobs_per_s[workers={w},taskq]={tq:.0f}")
        rows.append(
            [
                f"{w} worker process{'es' if w > 1 else ''}",
                spread(got[f"taskq {w}"]),
                f"{tq / one:.2f}x",
                cpu(f"taskq {w}"),
                spread(got[f"arq {w}"]),
                cpu(f"arq {w}"),
            ]
        )
    before, after = added_mid_batch(url, n)
    rows.append(["1 worker, first 40 % of a batch", f"{before:,.0f}", f"{before / one:.2f}x", "", "", ""])
    if after:
        rows.append(["+1 worker added while the batch runs", f"{after:,.0f}", f"{after / one:.2f}x", "", "", ""])
    return table(
        f"Worker processes: {n:,} no-op jobs queued once all workers are up, max_jobs=10 per worker, loopback; "
        f"median (range) of {repeat} interleaved runs; load average {os.getloadavg()[0]:.1f}",
        [
            "workers",
            "taskq jobs/s",
            "vs 1",
            "taskq CPU us/job: workers / server (with enqueue)",
            "arq (5 ms polls) jobs/s",
            "arq CPU us/job: workers / server",
        ],
        rows,
    )


# ------------------------------------------------------------------------------ server CPU per job


def _wait_queue_empty(url: str, timeout: float) -> None:
    """Until arq's queue is empty (a job leaves it when it finishes); ZCARD 20 times a second."""
    r = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    while cast(int, r.zcard("arq:queue")) and time.monotonic() < deadline:
        time.sleep(0.05)
    r.close()


def server_cost_table(url: str, n: int, workers: int) -> str:
    rows = []
    for kind in ("arq", "taskq"):
        flush(url)
        submit, run = ServerMeter(url), ServerMeter(url)
        with submit.measure():
            asyncio.run(enqueue_taskq(url, n) if kind == "taskq" else enqueue_arq(url, n))
        r = redis.Redis.from_url(url)
        with ExitStack() as stack:
            procs = [
                stack.enter_context(
                    taskq_worker(url, "bench.noop_jobs")
                    if kind == "taskq"
                    else arq_worker(url, "bench.arq_baseline.Fast")
                )
                for _ in range(workers)
            ]
            # from here on: the workers are up (their start-up CPU is not a job's cost)
            with run.measure():
                done0 = n - cast(int, r.zcard("arq:queue"))
                cpu0 = sum(cpu_seconds(p.pid) for p in procs)
                _wait_queue_empty(url, timeout=900)
                worker_cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu0
        r.close()
        wait_drained(url, n, timeout=60)  # every job finished (outside the meters: it reads all results)
        ran = n - done0
        enqueue_us, run_us = submit.cpu / n * 1e6, run.cpu / ran * 1e6
        per_job = enqueue_us + run_us
        saturation = 1e6 / per_job
        calls = {
            k: submit.commands.get(k, (0, 0))[0] / n + run.commands.get(k, (0, 0))[0] / ran
            for k in {*submit.commands, *run.commands}
        }
        usec = {k: submit.commands.get(k, (0, 0))[1] / n + run.commands.get(k, (0, 0))[1] / ran for k in calls}
        top = sorted(usec, key=lambda k: -usec[k])[:5]
        rows.append(
            [
                "arq (5 ms polls)" if kind == "arq" else "taskq",
                f"{enqueue_us:.1f}",
                f"{run_us:.1f}",
                f"{per_job:.1f}",
                f"{sum(calls.values()):.1f}",
                ", ".join(f"{k} {calls[k]:.1f}x/{usec[k]:.1f}us" for k in top),
                f"{saturation:,.0f}",
                f"{worker_cpu / ran * 1e6:.0f}",
            ]
        )
        print(f"FIGURE scaling_server_cpu_us_per_job[{kind}]={per_job:.1f}")
        print(f"FIGURE scaling_one_primary_saturates_jobs_per_s[{kind}]={saturation:.0f}")
        print(f"FIGURE scaling_worker_cpu_us_per_job[{kind}]={worker_cpu / ran * 1e6:.0f}")
    return table(
        f"CPU per job: server main thread (INFO cpu / commandstats) and worker processes (/proc); {n:,} no-op "
        f"jobs, {workers} worker processes; load average {os.getloadavg()[0]:.1f}",
        [
            "system",
            "server: enqueue us/job",
            "run us/job",
            "total us/job",
            "commands/job",
            "top commands (calls/job, us/job)",
            "1 primary saturates at jobs/s",
            "worker CPU us/job",
        ],
        rows,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=3000, help="jobs per drain")
    p.add_argument("--latency-n", type=int, default=100, help="jobs per latency run")
    p.add_argument("--rtt", type=float, nargs="+", default=[0.0, 0.5, 2.0], help="round trips to test, ms")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="worker process counts")
    p.add_argument("--repeat", type=int, default=3, help="interleaved runs per measurement (median reported)")
    args = p.parse_args()
    with server() as srv:
        print(network_table(srv, args.rtt, args.n, args.latency_n, args.repeat), flush=True)
        print(flush=True)
        print(workers_table(srv.url, args.n, args.workers, args.repeat), flush=True)
        print(flush=True)
        print(server_cost_table(srv.url, args.n, 2), flush=True)


if __name__ == "__main__":
    main()
