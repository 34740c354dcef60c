"""Never compute twice: a submit whose inputs were seen before is served from the stored result.

A function marked ``@job(cache=True)`` (or ``cache=timedelta(days=7)``), or any submit with
``_cache=True``, is keyed by the function's identity and version plus a stable digest of its
arguments. A submit whose key has a finished result returns a handle that is already complete
(``job.cached`` is True) without enqueuing anything; identical submits while the first one runs
share its job (and its result). A run that fails or is cancelled is never cached::

    @taskq_sdk.job(cache=True)
    def embed(text: str) -> list[float]: ...

    job = client.submit(embed, "hello")          # runs
    again = client.submit(embed, "hello")        # again.cached is True: the same job, not a new run
    client.submit(embed, "hello", _cache=False)  # runs anyway
    client.cache_clear(embed)                    # forget embed's entries

The version is the ``version=`` given to ``@job`` (or ``@cluster.job``), else a hash of the
function's bytecode, constants, defaults, closure and the plain values and same-module functions
it reads - stable across processes and kernel restarts, so re-running an unchanged notebook cell
reuses results and editing the function recomputes. A job submitted by name alone, without its
function here, is keyed on its name (declare ``version=`` and submit the function, or call
``cache_clear`` after deploying new code). Entries are per tenant, live ``TASKQ_CACHE_TTL``
seconds (default 7 days) and at most ``TASKQ_CACHE_MAX_ENTRIES`` per tenant (least recently used
go first); metrics count ``cache_hits`` and ``cache_misses``.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._cache_options import cache_setting
from ._callables import registered_spec
from ._digests import code_version, inputs_digest, qualname
from .errors import ConfigurationError

if TYPE_CHECKING:
    from ._backend.store import SubmitRow
    from ._core import ClientCore
    from .handles import AsyncJob
    from .registry import JobSpec

__all__ = [
    "CachePlan",
    "Described",
    "cache_plan",
    "claim_or_share",
    "code_version",
    "describe_function",
    "function_digest",
    "function_digest_of",
    "inputs_digest",
    "release_claim",
]

#: how long a submit that found an entry claimed a moment ago waits for its job to be written
PENDING_WAIT_SECONDS = 5.0


# ----------------------------------------------------------------------------- plans
@dataclass(frozen=True)
class CachePlan:
    """A cached submit's entry (``<function digest>:<inputs digest>``) and how long it lives."""

    entry: str
    ttl_ms: int


@dataclass(frozen=True)
class Described:
    identity: str  # what names the function across processes
    version: str
    cache: bool | float  # what @job(cache=...) declared
    scoped: bool  # it takes ``workspace``: its entries are per workspace
    fn: Callable[..., Any] | None = None  # the function itself, when it is here (to bind arguments)


def _describe_spec(spec: JobSpec) -> Described:
    version = spec.extra.get("version") or code_version(spec.fn)
    return Described(spec.name, version, spec.extra.get("cache", False), spec.declares("workspace"), spec.fn)


def describe_function(core: ClientCore, fn: Any, name: str) -> Described:
    """The identity, version and declared cache setting of the function behind a submit."""
    from .registry import JobSpec

    if callable(fn) and not isinstance(fn, str):
        marked = getattr(fn, "__taskq_job__", None)
        if isinstance(marked, JobSpec):
            return _describe_spec(marked)
        try:
            scoped = "workspace" in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            scoped = False
        return Described(qualname(inspect.unwrap(fn)), code_version(fn), False, scoped, fn)
    spec = registered_spec(core, name)  # a function a LocalCluster registered under this name
    if spec is not None:
        return _describe_spec(spec)
    return Described(name, "", False, True)


def _bound(fn: Callable[..., Any] | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The call's arguments by parameter name with defaults filled in (``f(1)``, ``f(x=1)`` and
    ``f(1, step=0.05)`` with that default are one call), or as given when the signature is not here."""
    if fn is not None:
        try:
            sig = inspect.signature(inspect.unwrap(fn))
            params = list(sig.parameters.values())
            if params and params[0].name == "ctx":
                sig = sig.replace(parameters=params[1:])
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            return {"bound": dict(bound.arguments)}
        except (TypeError, ValueError):
            pass  # it will fail on the worker with the same error; key it as given
    return [list(args), kwargs]


def _digest_of(identity: str) -> str:
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def function_digest_of(described: Described) -> str:
    """The digest prefixing the cache entries of a described function."""
    return _digest_of(described.identity)


def function_digest(core: ClientCore, fn: str | Callable[..., Any]) -> str:
    """The digest that prefixes a function's cache entries (what ``cache_clear(fn)`` drops).

    Example::

        function_digest(core, "score")   # '5e0c1a9b2f3d4e6a'
    """
    if isinstance(fn, str) and fn:
        return _digest_of(describe_function(core, fn, fn).identity)
    if callable(fn) and not isinstance(fn, str):
        return _digest_of(describe_function(core, fn, "").identity)
    raise ConfigurationError(f"cache_clear() takes a job name or a function, not {fn!r}")


def _declared_cache(core: ClientCore, fn: Any, name: str) -> bool | float:
    """What ``@job(cache=...)`` declared for the function behind a submit (False: nothing), without hashing it."""
    spec = getattr(fn, "__taskq_job__", None) if callable(fn) and not isinstance(fn, str) else None
    if spec is None and isinstance(fn, str):
        spec = registered_spec(core, name)
    extra = getattr(spec, "extra", None)
    setting: bool | float = extra.get("cache", False) if isinstance(extra, dict) else False
    return setting


def cache_plan(
    core: ClientCore, fn: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], workspace: str
) -> CachePlan | None:
    """The cache entry of a submit, or None when the submit is not cached.

    ``fn`` is what the caller passed (a function or a name), ``name`` the job name it runs under,
    ``kwargs`` the call's keyword arguments with the SDK options (``_cache``) still in.

    Example::

        plan = cache_plan(core, embed, "embed", ("hello",), {}, "default")   # CachePlan(entry='…:…', ...)
    """
    option = kwargs.get("_cache")
    setting = _declared_cache(core, fn, name) if option is None else cache_setting(option, "_cache")
    if setting is False:
        return None  # the common case costs two lookups: the version is hashed only for cached submits
    described = describe_function(core, fn, name)
    ttl = core.settings.cache_ttl if setting is True else float(setting)
    call_kwargs = {k: v for k, v in kwargs.items() if not k.startswith("_") and k not in ("tenant", "workspace")}
    # a function that takes its workspace computes per workspace; others share the tenant's entries
    scope = workspace if described.scoped else ""
    call = _bound(described.fn, args, call_kwargs)
    inputs = inputs_digest([described.version, scope, call], core.codec.dumps)
    fn_digest = _digest_of(described.identity)
    return CachePlan(entry=f"{fn_digest}:{inputs[:40]}", ttl_ms=int(ttl * 1000))


async def claim_or_share(core: ClientCore, plan: CachePlan, row: SubmitRow) -> AsyncJob | None:
    """Claim the plan's entry for ``row`` (then None: write the job), or the handle of the job serving it.

    Example::

        # not run: internal, the submit path of a cached function
        shared = await claim_or_share(core, plan, row)
        if shared is None: created, follow = await core.submit_followed(row)
    """
    from ._names import tenant_of
    from .handles import AsyncJob

    claim = await core.call(
        lambda s: s.cache.claim(
            tenant=tenant_of(row.job_id),
            entry=plan.entry,
            job_id=row.job_id,
            ttl_ms=plan.ttl_ms,
            max_entries=core.settings.cache_max_entries,
            workspace=row.workspace,
            function=row.function,
            job_ttl_ms=row.job_ttl_ms,
            now_ms=int(time.time() * 1000),
        ),
        "submit a job to",
    )
    if claim.job_id is None:
        return None  # this submit's job serves the entry: the caller writes it (release_claim if it cannot)
    # a hit on a complete job reads its result with its state: result() then needs no round trip
    state = await core.fetch_state(claim.job_id, with_result=claim.status == "complete")
    deadline = time.monotonic() + PENDING_WAIT_SECONDS
    pause = 0.005
    while not state.exists and claim.status == "pending" and time.monotonic() < deadline:
        await asyncio.sleep(pause)  # its claimer is writing it (claimed a moment ago)
        pause = min(pause * 2, 0.1)
        state = await core.fetch_state(claim.job_id)
    return AsyncJob(core, claim.job_id, created=False, known=True, state=state, cached=True)


async def release_claim(core: ClientCore, plan: CachePlan, row: SubmitRow) -> None:
    """Give up the entry ``row`` claimed when its job could not be written (best effort: it lapses anyway).

    Example::

        # not run: internal, the submit path of a cached function
        try: await core.submit_followed(row)
        except BaseException: await release_claim(core, plan, row); raise
    """
    from ._names import tenant_of

    try:
        await core.call(lambda s: s.cache.release(tenant_of(row.job_id), plan.entry, row.job_id))
    except Exception:  # the server is what failed: the claim lapses after its grace period
        pass
