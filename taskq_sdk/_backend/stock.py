"""Running taskq jobs on the stock ``arq`` command: a ``WorkerSettings`` class built from job specs.

The stock worker still runs every job inside the taskq wrapper (progress, captured output, the
retry policy, encoded errors, the safe wire format), but has no push wake-up, claim renewal or
reconnect-on-outage: those need ``python -m taskq_sdk.worker``::

    # mypkg/settings.py
    from taskq_sdk.worker import make_worker_settings
    WorkerSettings = make_worker_settings(["mypkg.jobs"])

    $ arq mypkg.settings.WorkerSettings
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from arq.connections import RedisSettings
from arq.worker import Function, func
from arq.worker import Retry as ArqRetry

from .._names import tenant_of
from .._sentinel_url import SentinelAddress
from ..config import Settings, mask_url
from ..errors import ConfigurationError
from ..execution import execute
from ..registry import JobSpec
from ..runtime import JobContext, install_output_capture, remote_error
from ..serialization import RemoteError, codec_for
from . import layout
from .store import Store, now_ms

__all__ = ["RemoteFailure", "build_worker_settings"]


class RemoteFailure(Exception):
    """Carries an already-encoded job error through arq's result path unchanged.

    Example::

        raise RemoteFailure(remote_error("ValueError", "bad row", traceback="..."))
    """

    def __init__(self, error: RemoteError) -> None:
        self.remote_error = error
        super().__init__(f"{error.type}: {error.message}")


@dataclass
class SafeRedisSettings(RedisSettings):
    """arq's connection settings with a repr that never shows the password."""

    def __repr__(self) -> str:
        shown = {k: ("***" if k == "password" and v else v) for k, v in self.__dict__.items()}
        return "RedisSettings({})".format(", ".join(f"{k}={v!r}" for k, v in shown.items()))


def redis_settings_for(settings: Settings) -> SafeRedisSettings:
    """arq ``RedisSettings`` equivalent to a taskq :class:`Settings` (URL, TLS, timeouts)."""
    from urllib.parse import parse_qs, urlsplit

    address = settings.sentinel()
    if address is not None:
        return _sentinel_redis_settings(address, settings)
    url = settings.url()
    base = RedisSettings.from_dsn(url)
    rs = SafeRedisSettings(**base.__dict__)
    query = parse_qs(urlsplit(url).query)  # redis-py accepts ?username=&password=; arq's from_dsn does not
    if not rs.password and query.get("password"):
        rs.password = query["password"][-1]
    if not rs.username and query.get("username"):
        rs.username = query["username"][-1]
    rs.conn_timeout = int(max(1, settings.connect_timeout))
    if rs.ssl:
        rs.ssl_check_hostname = settings.tls_check_hostname
        rs.ssl_ca_certs = settings.tls_ca_certs
    return rs


def _sentinel_redis_settings(address: SentinelAddress, settings: Settings) -> SafeRedisSettings:
    """arq's own Sentinel support (``sentinel=True``): it has no place for the sentinels' password."""
    if address.sentinel_password is not None or address.sentinel_username:
        raise ConfigurationError(
            "The stock `arq` command cannot authenticate to password-protected sentinels (arq's RedisSettings "
            "passes the password to the data nodes only). Run `python -m taskq_sdk.worker` instead, or leave "
            "REDIS_SENTINEL_PASSWORD unset if the sentinels need none."
        )
    rs = SafeRedisSettings(
        host=list(address.sentinels),  # arq takes a list of (host, port) for sentinels
        sentinel=True,
        sentinel_master=address.master,
        database=address.db,
        username=address.username,
        password=address.password,
        ssl=address.tls,
        conn_timeout=int(max(1, settings.connect_timeout)),
    )
    if rs.ssl:
        rs.ssl_check_hostname = settings.tls_check_hostname
        rs.ssl_ca_certs = settings.tls_ca_certs
    return rs


def _entry(spec: JobSpec, settings: Settings) -> Any:
    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        redis = ctx["redis"]
        job_id: str = ctx["job_id"]
        attempt = int(ctx.get("job_try") or 1)
        mk = layout.meta_key(job_id)
        # a queued job's record rides in its job key until it starts: written out as its hash here
        await redis.register_script(layout.MATERIALIZE)(keys=[], args=[job_id])
        timeout_s, max_tries_s, ws = (
            (v.decode() if isinstance(v, bytes) else v) for v in await redis.hmget(mk, "timeout", "max_tries", "ws")
        )
        has_meta = ws is not None
        max_tries = int(max_tries_s) if max_tries_s else (spec.max_tries or settings.max_tries)
        if attempt > max_tries:
            raise RemoteFailure(
                remote_error(
                    "AttemptsExhausted", f"gave up after {max_tries} attempts: earlier attempts ended without a result"
                )
            )
        worker = f"arq:{socket.gethostname()}:{os.getpid()}"
        if has_meta:
            await redis.hset(
                mk,
                mapping={"state": "in_progress", "attempt": attempt, "worker": worker, "started": now_ms()},
            )
            await redis.publish(layout.job_channel(job_id), json.dumps({"e": "started", "a": attempt, "w": worker}))
        progress = redis.register_script(layout.PROGRESS)
        pending: set[asyncio.Task[Any]] = set()

        def sink(jctx: JobContext, payload: dict[str, Any]) -> None:
            lines = payload.pop("_logs", [])
            fields = {k: str(v) for k, v in payload.items()}
            event = (
                json.dumps({"e": "progress", "p": payload.get("p"), "m": payload.get("pmsg")}) if "p" in payload else ""
            )
            task = asyncio.ensure_future(
                progress(
                    keys=[],
                    args=[
                        job_id,
                        "",  # the stock worker's claims carry no fencing token
                        json.dumps(fields),
                        json.dumps(lines) if lines else "",
                        settings.log_lines,
                        event,
                    ],
                )
            )
            pending.add(task)
            task.add_done_callback(pending.discard)

        jctx = JobContext(
            job_id=job_id,
            function=spec.name,
            tenant=tenant_of(job_id),
            workspace=ws or "default",
            attempt=attempt,
            max_tries=max_tries,
            loop=asyncio.get_running_loop(),
            sink=sink,
            log_limit=settings.log_lines,
        )
        try:
            outcome = await execute(
                spec,
                jctx,
                args,
                kwargs,
                arq_ctx=ctx,
                timeout=float(timeout_s) if timeout_s else None,
                executor=None,
                retry_base=settings.retry_delay,
                retry_cap=settings.retry_max_delay,
            )
        except asyncio.CancelledError:
            if has_meta:
                await asyncio.shield(redis.hset(mk, mapping={"state": "cancelled", "finished": now_ms()}))
            raise
        jctx.flush()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        state = {"complete": "complete", "retry": "retrying"}.get(outcome.kind, "failed")
        if outcome.error is not None and outcome.error.kind == "cancelled":
            state = "cancelled"
        if has_meta:
            err = "" if outcome.error is None else f"{outcome.error.type}: {outcome.error.message}"[:500]
            await redis.hset(mk, mapping={"state": state, "finished": now_ms(), "err": err})
            if state != "retrying":
                await redis.pexpire(mk, int((settings.keep_result + settings.tombstone_ttl) * 1000))
        if outcome.kind == "complete":
            return outcome.value
        if outcome.kind == "retry":
            raise ArqRetry(defer=outcome.retry_delay)
        assert outcome.error is not None
        raise RemoteFailure(outcome.error)

    run.__name__ = run.__qualname__ = spec.name
    return run


def stock_functions(specs: Mapping[str, JobSpec], settings: Settings) -> list[Function]:
    """arq ``Function`` objects that run each spec inside the taskq wrapper."""
    return [
        # attempts are counted by the wrapper (per-submit _retries live in taskq's metadata)
        func(
            _entry(spec, settings),
            name=spec.name,
            timeout=spec.timeout or settings.job_timeout,
            max_tries=1000,
        )
        for spec in specs.values()
    ]


def build_worker_settings(specs: Mapping[str, JobSpec], settings: Settings, queue: str | None = None) -> type:
    """A ``WorkerSettings`` class the stock ``arq`` command can run (see the module docstring)."""
    codec = codec_for(settings)
    queue_name = queue or settings.queue

    async def on_startup(ctx: dict[str, Any]) -> None:
        install_output_capture()
        ctx["settings"] = settings
        ctx["taskq_resolve"] = specs.get
        store = Store(ctx["redis"], codec, settings)
        ctx["taskq_store"] = store
        await store.announce_names(queue_name, list(specs), {n: s.params for n, s in specs.items()})

    attrs: dict[str, Any] = {
        "__doc__": f"arq settings for taskq jobs on queue {queue_name!r} at {mask_url(settings.url())}.",
        "functions": stock_functions(specs, settings),
        "queue_name": layout.queue_key(queue_name),
        "redis_settings": redis_settings_for(settings),
        "max_jobs": settings.max_jobs,
        "job_timeout": settings.job_timeout,
        "keep_result": settings.keep_result,
        "max_tries": 1000,
        "allow_abort_jobs": True,
        "job_serializer": codec.serializer,
        "job_deserializer": codec.deserializer,
        "on_startup": on_startup,
        "health_check_interval": 10,
    }
    return type("WorkerSettings", (), attrs)
