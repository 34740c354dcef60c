"""Limits under faults, with real worker processes and a real server.

- A worker frozen (SIGSTOP) while its job holds the only ``max_concurrency`` permit: the permit lapses
  with the claim (TASKQ_CLAIM_TTL), another worker runs that job and the next; when the frozen worker
  wakes, its copy is fenced (it stops at its next claim check) and no two copies ever tick at once.
- A limit check cut off by the network (the connection reset under the worker's check) is asked
  again and counts no attempt: the job runs once, as attempt 1.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from taskq_sdk import Client
from taskq_sdk._backend.limits import SNAPSHOT
from taskq_sdk._server import LocalServer
from taskq_sdk.config import Settings
from taskq_sdk.local import WorkerProcess

from .conftest import figure, wait_until
from .limit_jobs import SPANS
from .test_fencing import stale_ticks, ticks_of

pytestmark = pytest.mark.chaos
LIMIT_JOBS = ("tests.limit_jobs",)


def _copies(path: Path) -> list[str]:
    seen: list[str] = []
    for name in ticks_of(path):
        if name not in seen:
            seen.append(name)
    return seen


def test_a_frozen_workers_permit_lapses_and_it_cannot_exceed_the_cap_when_it_wakes(
    settings: Settings,
    redis_url: str,
    sync_redis: redis.Redis,
    tmp_path: Path,
    start_worker_process: Callable[..., WorkerProcess],
) -> None:
    frozen = start_worker_process(modules=LIMIT_JOBS)
    path = tmp_path / "ticks"
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:  # permits held, as the gate counts them (one atomic script), every 10 ms
        r = redis.Redis.from_url(redis_url)
        script = r.register_script(SNAPSHOT)
        while not stop.wait(0.01):
            rows = json.loads(script(keys=[], args=["default"]))
            samples.append(sum(int(row["running"]) for row in rows if row["name"] == "fn:one_ticker"))
        r.close()

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with Client(settings=settings) as client:
        try:
            k0 = client.submit("one_ticker", str(path), 400, 3)  # ~20 s on its first attempt, 3 ticks later
            wait_until(lambda: len(ticks_of(path)) >= 3, what="the first job ticking on the first worker")
            os.kill(frozen.pid, signal.SIGSTOP)
            try:
                start_worker_process(modules=LIMIT_JOBS)
                k1 = client.submit("one_ticker", str(path), 60, 60)  # ~3 s: the permit's holder when it wakes
                assert k0.result(timeout=60).split(":")[1] == "2", "the first job ran again, as attempt 2"
                wait_until(lambda: len(_copies(path)) == 3 and len(ticks_of(path)) >= 3 + 3 + 5, what="k1 ticks")
            finally:
                os.kill(frozen.pid, signal.SIGCONT)
            k1.result(timeout=60)
            k2 = client.submit("one_ticker", str(path), 3, 3)  # either worker may take it now
            k2.result(timeout=60)
        finally:
            stop.set()
            sampler.join(5)
        assert k0.info().attempts == 2
    copies, stale = stale_ticks(path)
    figure("limits_frozen_worker_stale_ticks", stale)
    figure("limits_frozen_worker_permits_max_sampled", max(samples))
    assert copies == 4, _copies(path)  # k0 (frozen), k0 again, k1, k2
    assert stale == 0, f"a copy ticked after a later copy had started: {stale} stale ticks"
    assert samples and max(samples) == 1, f"permits held, sampled: max {max(samples)} (limit 1)"
    assert frozen.is_alive(), frozen.log_tail()
    wait_until(
        lambda: "claim lost" in frozen.log_tail() or "another worker" in frozen.log_tail(),
        what=f"the woken worker logged why it stopped its copy:\n{frozen.log_tail()}",
    )


class ResettingProxy:
    """Forwards TCP to the server, and resets the connection (both ends) instead of forwarding the
    first ``cuts`` requests that carry ``marker``: a network fault under one command.

    Example::

        with ResettingProxy("127.0.0.1", 6379, b"key:flaky", cuts=2) as proxy: ...  # proxy.port
    """

    def __init__(self, host: str, port: int, marker: bytes, cuts: int) -> None:
        self.target = (host, port)
        self.marker, self.left, self.done = marker, cuts, 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False

    def __enter__(self) -> ResettingProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _cut_here(self, data: bytes) -> bool:
        with self._lock:
            if self.left > 0 and self.marker in data:
                self.left -= 1
                self.done += 1
                return True
        return False

    def _pump(self, src: socket.socket, dst: socket.socket, requests: bool) -> None:
        try:
            while data := src.recv(65536):
                if requests and self._cut_here(data):
                    for s in (src, dst):  # RST, not FIN: the reader sees a reset connection
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                        s.close()
                    return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass


@pytest.fixture
def resetting_proxy(server: LocalServer, redis_url: str) -> Iterator[ResettingProxy]:
    with ResettingProxy(server.host, server.port, b"key:flaky", cuts=3) as proxy:
        yield proxy


def test_a_limit_check_cut_off_by_the_network_counts_no_attempt(
    settings: Settings,
    server: LocalServer,
    sync_redis: redis.Redis,
    resetting_proxy: ResettingProxy,
    start_worker_process: Callable[..., WorkerProcess],
) -> None:
    """The worker reaches the server through a proxy that resets the connection under its first three
    limit checks of key ``flaky``: the job still runs once, as attempt 1, and completes."""
    via_proxy = f"redis://:{server.password}@127.0.0.1:{resetting_proxy.port}/0"
    start_worker_process(env={"REDIS_URL": via_proxy}, modules=LIMIT_JOBS)
    with Client(settings=settings) as client:
        client.set_limit("flaky", concurrency=2)
        job = client.submit("limited_call", "f0", 0.0, _limit_key="flaky")
        assert job.result(timeout=60) > 0
        info = job.info()
    assert resetting_proxy.done == 3, "the proxy cut three limit checks"
    runs = [raw.decode().split() for raw in sync_redis.lrange(SPANS, 0, -1)]
    assert [int(attempt) for _, _, attempt, _ in runs] == [1], runs
    assert info.attempts == 1
    figure("limits_check_cut_attempts_counted", info.attempts)


def test_a_check_after_the_claim_lapsed_puts_the_job_back_uncounted(
    settings: Settings, sync_redis: redis.Redis
) -> None:
    """The gate asked again by a worker whose claim lapsed meanwhile (nobody else claimed the job): the
    job goes back to its queue due now, its attempt uncounted, no permit or rate slot taken. Driven
    against the real server's script with the state such a worker leaves (no worker runs here)."""
    from taskq_sdk._backend import limits

    with Client(settings=settings) as client:
        client.set_limit("lapsed", rate="1/min", concurrency=1)
        job = client.submit("limited_call", "l0", _limit_key="lapsed")
    worker = "host:1:lapsedw"
    sync_redis.set(f"arq:retry:{job.id}", 1)  # the claim's attempt counter; the claim itself has lapsed
    sync_redis.hset(f"taskq:t:default:job:{job.id}", mapping={"worker": worker, "state": "in_progress"})
    gate = sync_redis.register_script(limits.GATE)
    lims = limits.gate_args("x", None, "lapsed")
    other = gate(keys=[], args=[job.id, "host:2:other#1", "arq:queue", 0, 1, *lims])
    assert other == [-1, b""], "another worker's token proves nothing"
    before_ms = int(sync_redis.time()[0]) * 1000
    due, why = gate(keys=[], args=[job.id, f"{worker}#1", "arq:queue", 0, 1, *lims])
    assert int(due) >= before_ms and why == b"", (due, why)
    assert sync_redis.zscore("arq:queue", job.id) == int(due), "back in its queue, due now"
    assert sync_redis.get(f"arq:retry:{job.id}") is None, "the lapsed attempt does not count"
    meta = sync_redis.hgetall(f"taskq:t:default:job:{job.id}")
    assert meta[b"state"] == b"queued" and meta.get(b"waiting", b"") == b"", meta
    assert sync_redis.zcard("taskq:t:default:lim:key:lapsed:run") == 0, "no permit taken"
    assert not sync_redis.exists("taskq:t:default:lim:key:lapsed:tb"), "no rate slot taken"
    assert int(sync_redis.hget("taskq:t:default:lim:key:lapsed:st", "waited") or 0) == 0
