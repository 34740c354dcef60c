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
import dataclasses
import datetime as _dt
import decimal
import functools
import hashlib
import inspect
import sys
import time
import types
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._cache_options import cache_setting
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
    "code_version",
    "describe_function",
    "function_digest",
    "function_digest_of",
    "inputs_digest",
    "release_claim",
]

#: how long a submit that found an entry claimed a moment ago waits for its job to be written
PENDING_WAIT_SECONDS = 5.0
#: how deep the version hash follows functions a function calls (same module only)
_MAX_DEPTH = 4


# ----------------------------------------------------------------------------- stable digests
class _Unhashable(Exception):
    """A value the canonical walk has no rule for (the caller decides: wire bytes or its type name)."""


def _feed(h: Any, value: Any, fallback: Callable[[Any], bytes] | None, depth: int = 0) -> None:
    """Feed ``value`` into hash ``h`` canonically: dicts by sorted items, arrays and frames by content."""
    if depth > 200:
        raise _Unhashable("nested too deeply")
    if value is None or isinstance(value, bool):
        h.update(b"N" if value is None else (b"T" if value else b"F"))
    elif isinstance(value, int):
        h.update(b"i%d;" % value)
    elif isinstance(value, float):
        h.update(b"f" + repr(value).encode() + b";")
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        h.update(b"s%d:" % len(data) + data)
    elif isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        h.update(b"b%d:" % len(data) + data)
    elif isinstance(value, list | tuple):
        h.update((b"l" if isinstance(value, list) else b"t") + b"%d[" % len(value))
        for item in value:
            _feed(h, item, fallback, depth + 1)
        h.update(b"]")
    elif isinstance(value, dict):
        _feed_unordered(h, b"d", [(k, v) for k, v in value.items()], fallback, depth)
    elif isinstance(value, set | frozenset):
        _feed_unordered(h, b"S", [(v, None) for v in value], fallback, depth)
    elif isinstance(value, _dt.datetime | _dt.date | _dt.time):
        h.update(b"D" + type(value).__name__.encode() + value.isoformat().encode() + b";")
    elif isinstance(value, _dt.timedelta):
        h.update(b"dt%r;" % value.total_seconds())
    elif isinstance(value, uuid.UUID | decimal.Decimal):
        h.update(b"U" + type(value).__name__.encode() + str(value).encode() + b";")
    elif _feed_data(h, value, fallback, depth):
        pass
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        h.update(b"C" + _qualname(type(value)).encode())
        _feed(h, {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, fallback, depth + 1)
    elif callable(getattr(value, "model_dump", None)) and hasattr(type(value), "model_fields"):
        h.update(b"P" + _qualname(type(value)).encode())
        _feed(h, value.model_dump(mode="json"), fallback, depth + 1)
    elif fallback is not None:
        data = fallback(value)
        h.update(b"W%d:" % len(data) + data)
    else:
        raise _Unhashable(type(value).__qualname__)


def _feed_unordered(h: Any, tag: bytes, pairs: list[tuple[Any, Any]], fallback: Any, depth: int) -> None:
    digests = []
    for k, v in pairs:
        sub = hashlib.sha256()
        _feed(sub, k, fallback, depth + 1)
        _feed(sub, v, fallback, depth + 1)
        digests.append(sub.digest())
    h.update(tag + b"%d{" % len(digests) + b"".join(sorted(digests)) + b"}")


def _feed_data(h: Any, value: Any, fallback: Any, depth: int) -> bool:
    """numpy arrays and scalars, pandas frames, series and indexes: fed by content; False for others."""
    module = type(value).__module__ or ""
    if module.startswith("numpy") and "numpy" in sys.modules:
        import numpy as np

        if isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                h.update(b"A%s" % str(value.shape).encode())
                _feed(h, value.tolist(), fallback, depth + 1)
            else:
                h.update(b"A" + value.dtype.str.encode() + str(value.shape).encode())
                h.update(np.ascontiguousarray(value).tobytes())
            return True
        if isinstance(value, np.generic):
            h.update(b"a" + value.dtype.str.encode() + value.tobytes())
            return True
        return False
    if module.startswith("pandas") and "pandas" in sys.modules:
        import pandas as pd

        if isinstance(value, pd.DataFrame | pd.Series | pd.Index):
            h.update(b"PD" + type(value).__name__.encode())
            if isinstance(value, pd.DataFrame):
                _feed(h, [str(c) for c in value.columns], fallback, depth + 1)
                _feed(h, [str(t) for t in value.dtypes], fallback, depth + 1)
            else:
                _feed(h, [str(value.name), str(value.dtype)], fallback, depth + 1)
            try:
                hashed = pd.util.hash_pandas_object(value, index=not isinstance(value, pd.Index))
                h.update(hashed.to_numpy().tobytes())
            except TypeError:  # unhashable cells (lists, dicts): their wire form
                if fallback is None:
                    raise _Unhashable(type(value).__qualname__) from None
                data = fallback(value)
                h.update(b"W%d:" % len(data) + data)
            return True
    return False


def inputs_digest(value: Any, fallback: Callable[[Any], bytes] | None = None) -> str:
    """A stable hex digest of ``value``: equal for equal content, whatever the dict order or process.

    Dicts and sets are hashed in a canonical order, numpy arrays and pandas objects by content;
    values without a rule are hashed by ``fallback(value)`` (their wire encoding).

    Example::

        inputs_digest([(1, 2), {"b": 2, "a": 1}]) == inputs_digest([(1, 2), {"a": 1, "b": 2}])   # True
    """
    h = hashlib.sha256()
    _feed(h, value, fallback)
    return h.hexdigest()


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '') or ''}.{getattr(obj, '__qualname__', None) or type(obj).__qualname__}"


# ----------------------------------------------------------------------------- code versions
def _feed_code(h: Any, code: types.CodeType) -> None:
    h.update(b"K%d,%d,%d;" % (code.co_argcount, code.co_kwonlyargcount, code.co_flags))
    h.update(code.co_code)
    _feed(h, [code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars], None)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _feed_code(h, const)
        else:
            _feed_soft(h, const)


def _feed_soft(h: Any, value: Any) -> None:
    """Feed a value a function holds (a default, a closure cell, a global it reads): by content if it
    has a canonical form, else by its type (an object without one must not make the version random)."""
    sub = hashlib.sha256()
    try:
        _feed(sub, value, None)
    except (_Unhashable, RecursionError, ValueError, TypeError):
        sub = hashlib.sha256(b"?" + _qualname(type(value)).encode())
    h.update(sub.digest())


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _feed_callable(h: Any, fn: Any, seen: set[int], depth: int) -> None:
    fn = inspect.unwrap(fn)
    if id(fn) in seen:
        h.update(b"<seen>")
        return
    seen.add(id(fn))
    if isinstance(fn, functools.partial):
        h.update(b"partial")
        _feed_callable(h, fn.func, seen, depth)
        _feed_soft(h, list(fn.args))
        _feed_soft(h, dict(fn.keywords))
        return
    if isinstance(fn, types.MethodType):
        _feed_callable(h, fn.__func__, seen, depth)
        return
    code = getattr(fn, "__code__", None)
    if not isinstance(code, types.CodeType):
        call = inspect.getattr_static(
            type(fn), "__call__", None
        )  # an instance with a __call__ method: that method's code
        h.update(_qualname(fn if isinstance(fn, type) else type(fn)).encode())
        if isinstance(call, types.FunctionType):
            _feed_callable(h, call, seen, depth)
        return
    _feed_code(h, code)
    _feed_soft(h, getattr(fn, "__defaults__", None) or ())
    _feed_soft(h, getattr(fn, "__kwdefaults__", None) or {})
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            content = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        if isinstance(content, types.FunctionType) and depth < _MAX_DEPTH:
            _feed_callable(h, content, seen, depth + 1)
        else:
            _feed_soft(h, content)
    module = getattr(fn, "__module__", None)
    scope = getattr(fn, "__globals__", {})
    for name in sorted(_global_names(code)):
        if name not in scope:
            continue
        value = scope[name]
        if isinstance(value, types.FunctionType):
            # a helper defined next to it (same module, a notebook's cells) is part of its code
            if value.__module__ == module and depth < _MAX_DEPTH:
                h.update(b"g" + name.encode())
                _feed_callable(h, value, seen, depth + 1)
        elif isinstance(value, int | float | str | bytes | tuple | frozenset | bool) or value is None:
            h.update(b"g" + name.encode())
            _feed_soft(h, value)


def code_version(fn: Callable[..., Any]) -> str:
    """A hash of what ``fn`` computes with: bytecode, constants, defaults, closure, plain globals it reads.

    Line numbers and file names are left out, so it is equal across processes and kernel restarts
    for unchanged code, and changes when the function (or a same-module helper it calls) changes.

    Example::

        def f(x): return x * 2
        code_version(f)   # '9b1c…'; editing f's body gives another value
    """
    h = hashlib.sha256()
    _feed_callable(h, fn, set(), 0)
    return h.hexdigest()[:32]


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
    from ._callables import registered_spec
    from .registry import JobSpec

    if callable(fn) and not isinstance(fn, str):
        marked = getattr(fn, "__taskq_job__", None)
        if isinstance(marked, JobSpec):
            return _describe_spec(marked)
        try:
            scoped = "workspace" in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            scoped = False
        return Described(_qualname(inspect.unwrap(fn)), code_version(fn), False, scoped, fn)
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
    from ._callables import registered_spec

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
    state = await core.fetch_state(claim.job_id)
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

        try: await core.submit_followed(row)
        except BaseException: await release_claim(core, plan, row); raise
    """
    from ._names import tenant_of

    try:
        await core.call(lambda s: s.cache.release(tenant_of(row.job_id), plan.entry, row.job_id))
    except Exception:  # the server is what failed: the claim lapses after its grace period
        pass
