"""Marking job functions (``@taskq_sdk.job``) and collecting them from modules for a worker.

A job function is a plain sync or async Python function. One whose first parameter is named
``ctx`` receives arq's context dict. Decorating leaves the function callable as before::

    import taskq_sdk

    @taskq_sdk.job(timeout=60, retries=5)
    def resize(path: str, width: int) -> str: ...

    # python -m taskq_sdk.worker mypkg.jobs   serves `resize` next to the built-in jobs
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, TypeVar, overload

from ._cache_options import cache_options
from .errors import ConfigurationError
from .limits import Limit

__all__ = ["BUILTIN_JOB_MODULES", "JobSpec", "collect_jobs", "job", "spec_for"]

F = TypeVar("F", bound=Callable[..., Any])

#: modules whose jobs every taskq worker serves
BUILTIN_JOB_MODULES: tuple[str, ...] = (
    "taskq_sdk.jobs.video",
    "taskq_sdk.jobs.analysis",
    "taskq_sdk.jobs.monitoring",
    "taskq_sdk.jobs.mapping",
)

_ATTR = "__taskq_job__"


@dataclass(frozen=True)
class JobSpec:
    """How a worker runs one function: its name, whether it is async, takes ``ctx``, and its limits.

    Example::

        spec = spec_for(resize)
        spec.name, spec.is_async, spec.takes_ctx, spec.timeout, spec.max_tries
    """

    name: str
    fn: Callable[..., Any]
    is_async: bool
    takes_ctx: bool
    params: frozenset[str] | None  # None: the function takes **kwargs
    timeout: float | None = None
    max_tries: int | None = None
    retry_delay: float | None = None
    isolate: bool = False
    priority: int = 0
    module: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    #: ``@job(rate_limit=, max_concurrency=)``: enforced across all workers (see :mod:`taskq_sdk.limits`)
    limit: Limit | None = None

    def declares(self, name: str) -> bool:
        """Whether the function accepts a keyword argument ``name``."""
        return self.params is None or name in self.params


def _build_spec(
    fn: Callable[..., Any],
    *,
    name: str | None,
    timeout: float | None,
    retries: int | None,
    retry_delay: float | None,
    isolate: bool = False,
    priority: int = 0,
    rate_limit: str | None = None,
    max_concurrency: int | None = None,
) -> JobSpec:
    if not callable(fn):
        raise ConfigurationError(f"@job needs a function, got {type(fn).__name__}")
    if timeout is not None and timeout <= 0:
        raise ConfigurationError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if retries is not None and retries < 1:
        raise ConfigurationError(
            f"retries counts attempts in total (like ARQ_MAX_RETRIES); use 1 for no retry, got {retries!r}"
        )
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 100:
        raise ConfigurationError(f"priority is an integer from 0 (the default, lowest) to 100, got {priority!r}")
    target = inspect.unwrap(fn)
    sig = inspect.signature(target)
    params = list(sig.parameters.values())
    takes_ctx = bool(params) and params[0].name == "ctx"
    named: set[str] | None = set()
    for p in params[1 if takes_ctx else 0 :]:
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            named = None
            break
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY):
            assert named is not None
            named.add(p.name)
    job_name = name or getattr(target, "__name__", None)
    if not job_name or job_name == "<lambda>":
        raise ConfigurationError("give lambdas and callables without a __name__ an explicit name=")
    return JobSpec(
        name=job_name,
        fn=fn,
        is_async=inspect.iscoroutinefunction(target),
        takes_ctx=takes_ctx,
        params=None if named is None else frozenset(named),
        timeout=timeout,
        max_tries=retries,
        retry_delay=retry_delay,
        isolate=isolate,
        priority=priority,
        module=getattr(target, "__module__", "") or "",
        limit=Limit.of(rate=rate_limit, concurrency=max_concurrency)
        if rate_limit is not None or max_concurrency is not None
        else None,
    )


@overload
def job(fn: F, /) -> F: ...


@overload
def job(
    *,
    name: str | None = None,
    timeout: float | None = None,
    retries: int | None = None,
    retry_delay: float | None = None,
    isolate: bool = False,
    priority: int = 0,
    cache: bool | float | timedelta = False,
    version: str | None = None,
    rate_limit: str | None = None,
    max_concurrency: int | None = None,
) -> Callable[[F], F]: ...


def job(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    timeout: float | None = None,
    retries: int | None = None,
    retry_delay: float | None = None,
    isolate: bool = False,
    priority: int = 0,
    cache: bool | float | timedelta = False,
    version: str | None = None,
    rate_limit: str | None = None,
    max_concurrency: int | None = None,
) -> Any:
    """Mark a function as a taskq job; it stays callable as a normal function.

    ``retries`` counts attempts in total, like ``ARQ_MAX_RETRIES`` (1 = never retry).
    ``isolate=True`` runs each attempt in its own process, killed on timeout or cancel (a thread
    cannot be stopped; a process can). ``priority`` (0-100) is the default ``_priority`` when
    the function object itself is submitted or mapped (by name, pass ``_priority=``). ``cache=True``
    (or a timedelta) serves a call whose inputs were seen before from the stored result instead of
    running it again (see :mod:`taskq_sdk.caching`); ``version=`` names the code's version for that
    cache (default: a hash of the bytecode). ``rate_limit="50/s"`` and ``max_concurrency=4`` hold
    across every worker (see :mod:`taskq_sdk.limits`): a job over them waits in the queue, not in a slot.

    Example::

        @taskq_sdk.job
        async def fetch(url: str) -> bytes: ...

        @taskq_sdk.job(name="score-v2", timeout=30, retries=1)
        def score(text: str) -> float: ...

        @taskq_sdk.job(cache=timedelta(days=7), version="2")
        def embed(text: str) -> list[float]: ...
    """

    cached = cache_options(cache, version) if cache is not False or version is not None else None

    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        spec = _build_spec(
            f,
            name=name,
            timeout=timeout,
            retries=retries,
            retry_delay=retry_delay,
            isolate=isolate,
            priority=priority,
            rate_limit=rate_limit,
            max_concurrency=max_concurrency,
        )
        if cached is not None:
            spec = replace(spec, extra={**spec.extra, **cached})
        try:
            setattr(f, _ATTR, spec)
        except (AttributeError, TypeError) as exc:  # builtins, some callables
            raise ConfigurationError(f"cannot mark {f!r} as a job: {exc}") from exc
        return f

    return mark(fn) if fn is not None else mark


def spec_for(fn: Callable[..., Any], *, name: str | None = None) -> JobSpec:
    """The :class:`JobSpec` of a function: its ``@job`` marking, or defaults for a plain function.

    Example::

        def len_of_text(text: str) -> int:
            return len(text)

        spec_for(len_of_text).name   # 'len_of_text'
    """
    spec = getattr(fn, _ATTR, None)
    if isinstance(spec, JobSpec):
        if name and name != spec.name:
            return JobSpec(**{**spec.__dict__, "name": name})
        return spec
    return _build_spec(fn, name=name, timeout=None, retries=None, retry_delay=None)


def collect_jobs(modules: Iterable[str], *, include_builtins: bool = True) -> dict[str, JobSpec]:
    """Import ``modules`` and gather their ``@job`` functions (plus the built-in jobs) by name.

    Example::

        specs = collect_jobs(["mypkg.jobs"])
        sorted(specs)   # ['batch_analysis_async', 'process_video_async', 'resize', ...]
    """
    names = list(BUILTIN_JOB_MODULES if include_builtins else ()) + [m for m in modules if m]
    found: dict[str, JobSpec] = {}
    for mod_name in names:
        try:
            module = importlib.import_module(mod_name)
        except ImportError as exc:
            raise ConfigurationError(
                f"cannot import job module {mod_name!r}: {exc}. Check the module path and that it is "
                "importable from the worker's working directory (PYTHONPATH)."
            ) from exc
        for value in vars(module).values():
            spec = getattr(value, _ATTR, None)
            if not isinstance(spec, JobSpec):
                continue
            other = found.get(spec.name)
            if other is not None and inspect.unwrap(other.fn) is not inspect.unwrap(spec.fn):
                raise ConfigurationError(
                    f"two different functions are registered as job {spec.name!r} "
                    f"({other.module} and {spec.module}); give one of them @job(name=...)"
                )
            found[spec.name] = spec
    return found
