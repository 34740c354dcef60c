"""The ``taskq`` command: run workers or a local server, and inspect or steer jobs from a shell.

Connection: ``--url``, else ``REDIS_URL`` (or ``REDIS_HOST``/``PORT``/``PASSWORD``/``DB``), else
the ``taskq local`` running for this user (it leaves its URL in a private state file), else
``localhost:6379``::

    $ taskq local --workers 2              # embedded server + workers in the foreground; Ctrl-C stops both
    $ taskq jobs --status failed           # from another shell: finds the running `taskq local`

Exit codes: 0 ok, 1 the job/operation did not succeed (failed job, nothing cancelled; health
degraded), 2 usage or configuration error, 3 server unreachable (health down), 4 not found.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from . import _localstate
from ._version import __version__
from .errors import BrokerUnavailable, JobNotFound, TaskqError, short_id

__all__ = ["main"]

_EPILOG = """\
examples:
  taskq local --workers 2       embedded server + 2 workers in the foreground; Ctrl-C stops both
  taskq jobs --status failed    recent failed jobs (finds a running `taskq local` by itself)
  taskq status JOB_ID           one job (--json for scripts)
  taskq cancel JOB_ID           cancel a queued or running job; `taskq retry JOB_ID` runs it again
  taskq worker mypkg.jobs       a worker serving the jobs of module mypkg.jobs
  taskq metrics --window 300    counts, failure rate, p50/p95 over the last 5 minutes
  taskq health                  ok / degraded / down, and the reasons

connection: --url, else REDIS_URL (or REDIS_HOST, REDIS_PORT, REDIS_PASSWORD, REDIS_DB; or REDIS_SENTINELS
with REDIS_SENTINEL_MASTER), else the `taskq local` running for this user, else localhost:6379.
A Sentinel URL: --url 'redis+sentinel://:PASSWORD@host1:26379,host2:26379/mymaster/0'.

exit codes: 0 ok, 1 the job or operation did not succeed (health degraded), 2 usage or
configuration error, 3 server unreachable (health down), 4 not found."""

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_NOT_FOUND = 0, 1, 2, 3, 4
_CONNECTION_ENV = ("REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_SENTINELS")
#: Python advice in library messages, and what a shell user does instead
_SHELL_WORDS = (
    ("For a local one: LocalCluster() in Python, or `taskq local` in a shell.",
     "Start one with `taskq local` in another shell, or name yours with --url or REDIS_URL."),
    ("use a client bound to that tenant and its queue (tenant=..., queue=...)", "pass --tenant NAME"),
    ("Check REDIS_PASSWORD / REDIS_URL.", "Check the password in --url or REDIS_URL (or REDIS_PASSWORD)."),
)  # fmt: skip


def _shell(message: str) -> str:
    for python, shell in _SHELL_WORDS:
        message = message.replace(python, shell)
    return message


def _client(args: argparse.Namespace) -> Any:
    from .client import Client
    from .config import Settings

    settings = Settings()
    if args.url:
        settings = settings.with_url(args.url)
    elif not any(os.environ.get(k) for k in _CONNECTION_ENV):
        running = _localstate.read()  # the `taskq local` of this user, if one runs
        if running is not None:
            settings = settings.with_url(running.url)
    return Client(settings=settings, tenant=getattr(args, "tenant", None))


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    if args.json:
        print(json.dumps(data, default=str, indent=2))
    else:
        print(text)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.job(args.job_id)
        info = job.info()
        data = info.model_dump(mode="json")
        text = (
            f"{info.id}  {info.status.value}  {info.function or '?'}  attempts={info.attempts}"
            f"  progress={info.progress}  worker={info.worker or '-'}"
            + (f"\n  error: {info.error}" if info.error else "")
            + (f"\n  waits on: {', '.join(info.parents)}" if info.parents else "")
            + (f"\n  needed by: {', '.join(info.children)}" if info.children else "")
        )
        _print(args, data, text)
        return EXIT_FAILED if info.status.value in ("failed", "cancelled", "lost") else EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        ok = client.job(args.job_id).cancel()
        _print(
            args, {"job_id": args.job_id, "cancelled": ok}, "cancelled" if ok else "not cancelled (finished already)"
        )
        return EXIT_OK if ok else EXIT_FAILED


def cmd_retry(args: argparse.Namespace) -> int:
    with _client(args) as client:
        new = client.job(args.job_id).retry()
        _print(args, {"job_id": args.job_id, "new_job_id": new.id}, new.id)
        return EXIT_OK


def cmd_jobs(args: argparse.Namespace) -> int:
    with _client(args) as client:
        infos = client.jobs(status=args.status, workspace=args.workspace, limit=args.limit)
        rows = [
            {
                "id": i.id,
                "status": i.status.value,
                "function": i.function,
                "workspace": i.workspace,
                "attempts": i.attempts,
                "enqueued": i.enqueued_at.strftime("%Y-%m-%d %H:%M:%S") if i.enqueued_at else "",
                # a job that takes other jobs as arguments: the jobs it waits (or waited) on
                "waits on": ",".join(short_id(p) for p in i.parents),
            }
            for i in infos
        ]
        if not any(r["waits on"] for r in rows):
            for r in rows:
                del r["waits on"]
        _print(args, [i.model_dump(mode="json") for i in infos], _table(rows, list(rows[0]) if rows else []))
        return EXIT_OK


def cmd_workers(args: argparse.Namespace) -> int:
    with _client(args) as client:
        workers = client.workers()
        rows = [
            {
                "id": w.id,
                "status": w.status,
                "queue": w.queue,
                "max_jobs": w.max_jobs,
                "ongoing": w.ongoing,
                "complete": w.complete,
                "failed": w.failed,
                "uptime_s": round(w.uptime),
            }
            for w in workers
        ]
        _print(args, [w.model_dump(mode="json") for w in workers], _table(rows, list(rows[0]) if rows else []))
        return EXIT_OK


def cmd_metrics(args: argparse.Namespace) -> int:
    with _client(args) as client:
        m = client.metrics(window=args.window, workspace=args.workspace, function=args.function)
        rows = [
            {
                "tenant": r.tenant,
                "workspace": r.workspace,
                "function": r.function,
                "enqueued": r.enqueued,
                "complete": r.complete,
                "failed": r.failed,
                "retried": r.retried,
                "cancelled": r.cancelled,
                "fail_rate": f"{r.failure_rate:.1%}",
                "avg_s": "" if r.avg_seconds is None else f"{r.avg_seconds:.3f}",
                "p50_s": "" if r.p50_seconds is None else f"{r.p50_seconds:.3f}",
                "p95_s": "" if r.p95_seconds is None else f"{r.p95_seconds:.3f}",
            }
            for r in [*m.rows, m.totals]
        ]
        if rows:
            rows[-1].update(tenant="TOTAL", workspace="", function="")
        span = f"last {args.window:g}s" if args.window else "all time"
        depth = ", ".join(f"{q}={n}" for q, n in m.queue_depth.items())
        _print(
            args,
            m.model_dump(mode="json"),
            f"metrics ({span}); queue depth: {depth}\n" + _table(rows, list(rows[0]) if rows else []),
        )
        return EXIT_OK


def cmd_health(args: argparse.Namespace) -> int:
    with _client(args) as client:
        h = client.health(refresh=args.refresh)
        lines = [
            f"status: {h.status}  ({h.source} snapshot, {h.taken_at:%Y-%m-%d %H:%M:%S} UTC)",
            f"ping: {h.ping_ms if h.ping_ms is not None else '-'} ms, live workers: {h.live_workers}",
            "queues: " + (", ".join(f"{q.name}={q.depth}" for q in h.queues) or "-"),
            f"jobs (last {h.window_s:g}s): failure rate {h.jobs.failure_rate:.1%}",
        ]
        lines += [f"reason: {r}" for r in h.reasons]
        _print(args, h.model_dump(mode="json"), "\n".join(lines))
        return {"ok": EXIT_OK, "degraded": EXIT_FAILED}.get(h.status, EXIT_UNAVAILABLE)


def cmd_local(args: argparse.Namespace) -> int:
    from .local import LocalCluster

    running = _localstate.read()
    if running is not None:
        print(
            f"taskq local: already running for this user (pid {running.pid}, server {running.safe_url}). "
            f"Stop it first (Ctrl-C in its shell, or: kill {running.pid}); other taskq commands use it as it is.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    stop = threading.Event()
    # Ctrl-C, a closed terminal and a plain kill all stop it cleanly; SIGINT too when this process was
    # started with it ignored (by a shell's '&', nohup, a supervisor), where Python raises no KeyboardInterrupt
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    cluster = LocalCluster(n_workers=args.workers, jobs=args.modules, persist_dir=args.persist_dir)
    state = None
    try:
        # the full URL carries the password: it goes to 0600 files, never to the terminal
        state = _localstate.write(cluster.url, cluster.safe_url)
        if args.url_file:
            _localstate.write_private(args.url_file, cluster.url)
        print(f"taskq local: server {cluster.safe_url}, {args.workers} worker(s). Ctrl-C stops both.")
        print("other taskq commands in this user's shells use it: try `taskq workers`")
        if args.url_file:
            print(f'connect from elsewhere:  export REDIS_URL="$(cat {args.url_file})"')
        sys.stdout.flush()
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.close()
        if state is not None:
            _localstate.remove(state)
        if args.url_file:
            _localstate.remove_file(args.url_file)
        print("taskq local: stopped")
    return EXIT_OK


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, not {value}")
    return value


def _positive(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from .models import JobStatus

    parser = argparse.ArgumentParser(
        prog="taskq",
        description="Run taskq workers or a local server, and inspect or steer jobs.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"taskq {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--url", help="server URL (default: REDIS_URL, else the running `taskq local`, else localhost:6379)"
        )
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.add_argument("--tenant", help="act as this tenant")
        return p

    sub.add_parser("worker", help="run a worker (python -m taskq_sdk.worker)", add_help=False)
    p = sub.add_parser("local", help="embedded server + workers in the foreground")
    p.add_argument("modules", nargs="*", help="job modules the workers import")
    p.add_argument(
        "--workers", type=_count, default=1, metavar="N", help="worker processes to start (default: 1; 0: none)"
    )
    p.add_argument("--persist-dir", help="keep the server's data here (append-only file)")
    p.add_argument(
        "--url-file", help="also write the server URL (with its password) to this file (mode 0600; removed at stop)"
    )
    p.set_defaults(func=cmd_local)
    for name, fn, helptext in (
        ("status", cmd_status, "show one job"),
        ("cancel", cmd_cancel, "cancel a queued or running job"),
        ("retry", cmd_retry, "submit a finished job again"),
    ):
        p = common(sub.add_parser(name, help=helptext))
        p.add_argument("job_id")
        p.set_defaults(func=fn)
    p = common(sub.add_parser("jobs", help="list recent jobs"))
    p.add_argument("--status", choices=[s.value for s in JobStatus], help="only jobs in this state")
    p.add_argument("--workspace", help="only jobs of this workspace")
    p.add_argument("--limit", type=_positive, default=50, help="at most this many jobs (default: 50)")
    p.set_defaults(func=cmd_jobs)
    p = common(sub.add_parser("workers", help="list live workers"))
    p.set_defaults(func=cmd_workers)
    p = common(sub.add_parser("metrics", help="job counts, failure rate, p50/p95 times, queue depth"))
    p.add_argument("--window", type=float, help="seconds (up to 7200); default: all time")
    p.add_argument("--workspace")
    p.add_argument("--function")
    p.set_defaults(func=cmd_metrics)
    p = common(sub.add_parser("health", help="overall status (ok/degraded/down) and why; exit 0/1/3"))
    p.add_argument("--refresh", action="store_true", help="measure now instead of the latest scheduled snapshot")
    p.set_defaults(func=cmd_health)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``taskq`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "worker":
        from .worker import main as worker_main

        return worker_main(argv[1:], prog="taskq worker")
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except JobNotFound as exc:
        print(f"taskq: {_shell(str(exc))}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except BrokerUnavailable as exc:
        print(f"taskq: {_shell(str(exc))}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except TaskqError as exc:
        print(f"taskq: {_shell(str(exc))}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
