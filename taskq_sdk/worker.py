"""The worker: ``python -m taskq_sdk.worker [modules...]``, ``run_worker()``, ``WorkerSettings`` and stats.

Configured by the environment as in the seed (``REDIS_*``, ``ARQ_MAX_JOBS``, ``ARQ_TIMEOUT``,
``ARQ_MAX_RETRIES``, ``ARQ_RETRY_DELAY``) plus ``TASKQ_*``; it serves the built-in jobs and the
``@taskq_sdk.job`` functions of the modules you name::

    $ python -m taskq_sdk.worker                       # built-in jobs
    $ ARQ_MAX_JOBS=20 python -m taskq_sdk.worker mypkg.jobs --queue heavy
    $ arq taskq_sdk.worker.WorkerSettings             # the stock arq command (fewer features)

SIGTERM (or Ctrl-C) drains: running jobs finish (up to ``TASKQ_DRAIN_TIMEOUT``), no new ones
start; a second signal stops at once and sends running jobs back to the queue.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .config import Settings
from .registry import JobSpec, collect_jobs

if TYPE_CHECKING:
    from ._backend.engine import Engine
    from .extensions import EngineExtension

__all__ = [
    "default_extensions",
    "get_worker_stats",
    "main",
    "make_engine",
    "make_worker_settings",
    "run_worker",
    "run_worker_async",
]

logger = logging.getLogger("taskq_sdk.worker")


def make_worker_settings(
    modules: Sequence[str] = (), *, settings: Settings | None = None, queue: str | None = None
) -> type:
    """A ``WorkerSettings`` class for the stock ``arq`` command, serving built-ins plus ``modules``.

    Example::

        WorkerSettings = make_worker_settings(["mypkg.jobs"])   # then: arq mypkg.settings.WorkerSettings
    """
    from ._backend.stock import build_worker_settings

    settings = settings or Settings()
    specs = collect_jobs([*settings.job_module_list(), *modules])
    return build_worker_settings(specs, settings, queue)


def __getattr__(name: str) -> Any:
    # `arq taskq_sdk.worker.WorkerSettings`: built when asked for, so the environment is read then
    if name == "WorkerSettings":
        return make_worker_settings()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def default_extensions(settings: Settings) -> list[EngineExtension]:
    """The extensions every taskq worker runs for ``settings``: results DB, webhooks, schedules.

    * :class:`~taskq_sdk.results_writer.ResultsDBWriter` unless ``TASKQ_RESULTS_DB=off``;
    * :class:`~taskq_sdk.webhooks.WebhookSender` (idle until a client registers a webhook);
    * :class:`~taskq_sdk.scheduler.Scheduler` (monitoring on ``TASKQ_MONITORING_CRON``, plus registered
      schedules) unless ``TASKQ_SCHEDULER=false``.

    Example::

        # not run: worker internals, how python -m taskq_sdk.worker assembles its engine
        make_engine(specs, settings=s)   # runs default_extensions(s)
    """
    from .results_db import results_url
    from .results_writer import ResultsDBWriter
    from .scheduler import Scheduler, builtin_schedules
    from .webhooks import WebhookSender

    extensions: list[EngineExtension] = []
    if results_url(settings) is not None:
        extensions.append(ResultsDBWriter(settings))
    extensions.append(WebhookSender(settings))
    if settings.scheduler:
        extensions.append(Scheduler(builtin_schedules(settings)))
    return extensions


def make_engine(
    specs: dict[str, JobSpec],
    *,
    settings: Settings,
    queue: str | None = None,
    burst: bool = False,
    handle_signals: bool = True,
    extensions: Sequence[Any] = (),
    resolvers: Sequence[Callable[[str], JobSpec | None]] = (),
) -> Engine:
    """A worker engine serving ``specs`` with the default extensions plus ``extensions``.

    ``resolvers`` are consulted before ``specs`` for each job (newest registration wins): how an
    in-process LocalCluster worker runs notebook functions. Both ``python -m taskq_sdk.worker`` and
    LocalCluster's worker threads build their engine here.

    Example::

        # not run: installs signal handlers, so it runs in a main thread (as python -m taskq_sdk.worker)
        engine = make_engine(collect_jobs(["mypkg.jobs"]), settings=Settings(), burst=True)
        await engine.async_run(); await engine.close()
    """
    from ._backend.engine import Engine

    engine = Engine(
        specs,
        settings=settings,
        queue=queue or settings.queue,
        burst=burst,
        handle_signals=handle_signals,
        extensions=[*default_extensions(settings), *extensions],
    )
    engine.spec_resolvers[:0] = resolvers
    for resolver in resolvers:
        owner = getattr(resolver, "__self__", None)  # e.g. a dict's .get: list its keys
        if isinstance(owner, dict):
            engine.name_providers.append(owner.keys)
    return engine


async def run_worker_async(
    modules: Sequence[str] = (),
    *,
    settings: Settings | None = None,
    specs: dict[str, JobSpec] | None = None,
    queue: str | None = None,
    burst: bool = False,
    handle_signals: bool = True,
    ready: asyncio.Event | None = None,
    extensions: Sequence[Any] = (),
    freeze_gc: bool = False,
) -> Any:
    """Run a taskq worker on the current event loop until it is stopped; returns the engine.

    ``freeze_gc`` (what ``python -m taskq_sdk.worker`` passes): once started, what start-up built is
    kept out of the cyclic garbage collector's passes (``gc.freeze``) - a full pass then takes ~0.2 ms
    instead of ~14 ms in the middle of a job. Leave it off in a process that is not only a worker.

    Example::

        # not run: installs signal handlers, so it runs in a main thread (as python -m taskq_sdk.worker)
        engine = await run_worker_async(["mypkg.jobs"], burst=True)
        engine.jobs_complete
    """
    settings = settings or Settings()
    if specs is None:
        specs = collect_jobs([*settings.job_module_list(), *modules])
    engine = make_engine(
        specs, settings=settings, queue=queue, burst=burst, handle_signals=handle_signals, extensions=extensions
    )
    if freeze_gc:
        gc.freeze()
    try:
        if ready is not None:
            ready.set()
        await engine.async_run()
    finally:
        try:
            await asyncio.wait_for(engine.close(), 20)
        except TimeoutError:
            logger.error("worker %s: shutting down took over 20s; exiting anyway", engine.worker_id)
            faulthandler.dump_traceback(all_threads=True)
    return engine


def run_worker(modules: Sequence[str] = (), **kwargs: Any) -> Any:
    """Blocking :func:`run_worker_async` in a fresh event loop (what ``python -m taskq_sdk.worker`` runs).

    Example::

        # not run: installs signal handlers, so it runs in a main thread (as python -m taskq_sdk.worker)
        run_worker(["mypkg.jobs"], burst=True)
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(run_worker_async(modules, **kwargs))
    finally:
        # like asyncio.run's clean-up, but bounded: a task that swallowed its cancellation must not
        # keep the process from exiting
        from ._aio import close_loop

        asyncio.set_event_loop(None)
        close_loop(loop)


def get_worker_stats(settings: Settings | None = None) -> dict[str, Any]:
    """The seed's worker health: this process's worker, else a summary of the live workers on the server.

    Keys: ``status``, ``max_jobs``, ``jobs_complete``, ``jobs_failed``, ``jobs_retried``,
    ``jobs_ongoing``, ``uptime`` (and ``workers`` for the server-wide summary).

    Example::

        from taskq_sdk import worker
        stats = worker.get_worker_stats()
        print(f"Status: {stats['status']}")
        print(f"Max Jobs: {stats['max_jobs']}")
    """
    from ._backend.engine import RUNNING

    if RUNNING:
        stats: dict[str, Any] = RUNNING[-1].get_worker_stats()
        return stats
    from .client import Client

    with Client(settings=settings or Settings()) as client:
        workers = [w for w in client.workers() if w.status != "stopped"]
    summary: dict[str, Any] = {
        "status": "running" if workers else "no_workers",
        "max_jobs": sum(w.max_jobs for w in workers),
        "jobs_complete": sum(w.complete for w in workers),
        "jobs_failed": sum(w.failed for w in workers),
        "jobs_retried": sum(w.retried for w in workers),
        "jobs_cancelled": sum(w.cancelled for w in workers),
        "jobs_ongoing": sum(w.ongoing for w in workers),
        "uptime": max((w.uptime for w in workers), default=0.0),
        "workers": [w.as_stats() for w in workers],
    }
    return summary


def _watch_lifeline() -> None:
    from ._lifeline import ENV_VAR, watch_owner

    raw = os.environ.get(ENV_VAR)
    if not raw:
        return

    def owner_died() -> None:
        # the process that started us is gone: stop now (running jobs go back to the queue)
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        threading.Timer(10.0, lambda: os._exit(3)).start()

    watch_owner(int(raw), owner_died)


def _configure_logging(settings: Settings, verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    if settings.log_format == "json":
        from ._logs import JsonFormatter

        handler = logging.StreamHandler(sys.__stderr__)
        handler.setFormatter(JsonFormatter())
    else:
        handler = logging.StreamHandler(sys.__stderr__)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("taskq_sdk").setLevel(level)


def build_parser(prog: str = "python -m taskq_sdk.worker") -> argparse.ArgumentParser:
    """The worker's command line (shared by ``taskq worker``)."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Run a taskq worker: serves the built-in jobs plus the @taskq_sdk.job functions of the "
        "modules you name. Connection and limits come from the environment (REDIS_URL or REDIS_HOST/PORT/"
        "PASSWORD/DB, ARQ_MAX_JOBS, ARQ_TIMEOUT, ARQ_MAX_RETRIES, ARQ_RETRY_DELAY, TASKQ_*).",
        epilog="Examples:\n  ARQ_MAX_JOBS=20 python -m taskq_sdk.worker mypkg.jobs\n"
        "  python -m taskq_sdk.worker mypkg.jobs --queue heavy --burst",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("modules", nargs="*", help="modules whose @taskq_sdk.job functions to serve")
    p.add_argument("--queue", help="queue to serve (default: TASKQ_QUEUE or 'default')")
    p.add_argument("--max-jobs", type=int, help="jobs at once (default: ARQ_MAX_JOBS or 10)")
    p.add_argument("--burst", action="store_true", help="exit once the queue is empty")
    p.add_argument("--url", help="server URL (default: REDIS_URL / REDIS_HOST...)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(
    argv: Sequence[str] | None = None,
    prog: str = "python -m taskq_sdk.worker",
    extra_extensions: Callable[[Settings], Sequence[Any]] | None = None,
) -> int:
    """Entry point of ``python -m taskq_sdk.worker`` and ``taskq worker``; returns the exit code."""
    args = build_parser(prog).parse_args(argv)
    from .errors import TaskqError

    overrides: dict[str, Any] = {}
    if args.max_jobs is not None:
        overrides["max_jobs"] = args.max_jobs
    try:
        settings = Settings(**overrides)
        if args.url:
            settings = settings.with_url(args.url)
    except (TaskqError, ValueError) as exc:
        print(f"taskq worker: invalid configuration: {exc}", file=sys.stderr)
        return 2
    _configure_logging(settings, args.verbose)
    # `kill -USR1 <pid>` dumps every thread's stack to stderr: how to see what a stuck worker is doing
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    sys.path.insert(0, os.getcwd())
    _watch_lifeline()
    try:
        extra = list(extra_extensions(settings)) if extra_extensions else []
        run_worker(
            args.modules, settings=settings, queue=args.queue, burst=args.burst, extensions=extra, freeze_gc=True
        )
    except TaskqError as exc:
        print(f"taskq worker: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    _exit_past_stuck_threads()
    return 0


def _exit_past_stuck_threads() -> None:
    """Exit now if job threads still run: a sync job past its limit must not keep the process alive.

    Thread pools are joined at interpreter exit, so one runaway sync job would turn a drained,
    SIGTERMed worker into a process that never exits.
    """
    deadline = time.monotonic() + 1.0
    stuck = [t for t in threading.enumerate() if t.name.startswith("taskq-job")]
    for t in stuck:  # idle pool threads leave within moments of the pool's shutdown
        t.join(max(0.0, deadline - time.monotonic()))
    stuck = [t for t in stuck if t.is_alive()]
    if stuck:
        logger.warning("exiting with %d job threads still running (sync jobs cannot be interrupted)", len(stuck))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
