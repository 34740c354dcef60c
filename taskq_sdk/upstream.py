"""Jobs that take other jobs as arguments: a handle passed to ``submit`` waits for that job's result.

``client.submit("train", client.submit("load", path))`` stores ``train`` as ``waiting``; the
server releases it when ``load`` completes (its finish script, no polling), and the worker calls
``train`` with ``load``'s result in place of the handle. A list of handles stands for the list of
their results, and a batch for the list of its items' results. If an upstream job fails or is
cancelled, the waiting job fails at once with ``UpstreamFailed`` naming it (retrying the upstream
job later does not bring the dependent back: submit it again - a dependent that silently ran later
on new data would be a surprise). Cancelling a dependent never cancels its upstream jobs. A complete
upstream's result is kept as long as a job waiting on it may still run (its definition's TTL), so a
dependent released after a long outage still finds it (after its last dependent ended it expires as
results do); one gone anyway fails it naming the key::

    # not run: internal, the submit path of a job with upstream handles
    args, kwargs, parents = detach_upstreams(core, args, kwargs)   # handles -> markers, their ids
    make_waiting(row, parents, expires=False)                       # written not due, state 'waiting'
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from ._backend.store import UPSTREAM_FEATURE, now_ms
from ._backend.upstream_io import BATCH_MARKER, MARKER, PARENTS_KEY, WAITING_TTL_MS
from ._names import tenant_of
from ._redact import call_repr
from .batch import AsyncBatch, Batch
from .errors import ConfigurationError, short_id
from .handles import AsyncJob, Job

if TYPE_CHECKING:
    from ._backend.store import SubmitRow
    from ._core import ClientCore

__all__ = ["detach_upstreams", "job_kwargs", "link_upstreams", "make_waiting"]

#: a waiting job's queue score: far enough that no worker takes it before it is released
_NOT_DUE_MS = 10 * 365 * 86_400_000


def _upstream_of(value: Any) -> tuple[list[str], Any] | None:
    """The job ids a job or batch handle stands for and the marker it travels as; None for other values."""
    if isinstance(value, Job):
        value = value.async_job
    if isinstance(value, AsyncJob):
        return [value.id], {MARKER: value.id}
    if isinstance(value, Batch):
        value = value._batch
    if isinstance(value, AsyncBatch):
        ids = value.job_ids()
        return ids, {BATCH_MARKER: ids, "runner": value.manifest.runner}
    return None


def _swap(value: Any, parents: dict[str, None]) -> Any:
    found = _upstream_of(value)
    if found is not None:
        parents.update(dict.fromkeys(found[0]))
        return found[1]
    # a list (or tuple) of handles: its first item says so; other containers are not walked (a submit's
    # arguments may be large, and the hot path must not walk them)
    if isinstance(value, list | tuple) and value and _upstream_of(value[0]) is not None:
        swapped = [_swap(v, parents) for v in value]
        return swapped if isinstance(value, list) else tuple(swapped)
    return value


def detach_upstreams(
    core: ClientCore, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any], list[str]]:
    """``args`` and ``kwargs`` with job handles replaced by markers, and the upstream job ids (in order).

    Example::

        load_job = client.submit("add", 1, 2)
        args, kwargs, parents = detach_upstreams(core, (load_job,), {})   # parents == [load_job.id]
    """
    if not args and not kwargs:
        return args, kwargs, []
    parents: dict[str, None] = {}
    new_args = tuple(_swap(a, parents) for a in args)
    new_kwargs = {k: v if k.startswith("_") else _swap(v, parents) for k, v in kwargs.items()}
    if not parents:
        return args, kwargs, []
    tenant, _ = core.identity(kwargs.get("tenant"), None)
    others = sorted({tenant_of(p) for p in parents} - {tenant})
    if others:
        raise ConfigurationError(
            f"a job of tenant {tenant!r} cannot take a job of tenant {others[0]!r} as an argument: "
            "jobs wait only on jobs of their own tenant"
        )
    core.open().refuse_on_cluster(UPSTREAM_FEATURE)  # before anything is written
    return new_args, new_kwargs, list(parents)


def make_waiting(
    row: SubmitRow,
    parents: list[str],
    *,
    expires: bool,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
) -> None:
    """Make a prepared job wait for ``parents``: not due until released, state ``waiting``; refuse a cycle.

    ``args`` / ``kwargs`` (the call with markers, as :func:`detach_upstreams` returned it) give the job's
    shown call: ``train(<result of 3f2a…>, epochs=3)`` rather than the markers the worker swaps.

    Example::

        # not run: internal, the submit path of a job with upstream handles
        make_waiting(row, ["acme:3f2a…"], expires=False, args=args, kwargs=kwargs)
    """
    if row.job_id in parents:
        raise ConfigurationError(
            f"job {row.job_id} cannot take itself as an argument (a cycle): give the new job another _job_id"
        )
    row.score_ms = now_ms() + _NOT_DUE_MS
    row.state = "waiting"
    if not expires:
        row.job_ttl_ms = WAITING_TTL_MS
    if kwargs is not None:
        shown = {k: _shown(v) for k, v in kwargs.items() if not k.startswith(("_", "$"))}
        row.args_repr = call_repr(row.function, [_shown(a) for a in args], shown)


class _ResultOf:
    """How a job handle passed as an argument shows in the job's call: ``<result of 3f2a…>``."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _shown(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1 and isinstance(value.get(MARKER), str):
        return _ResultOf(f"<result of {short_id(value[MARKER])}>")
    if isinstance(value, dict) and isinstance(value.get(BATCH_MARKER), list):
        return _ResultOf(f"<results of a batch of {len(value[BATCH_MARKER])} jobs>")
    if isinstance(value, list | tuple) and value and isinstance(value[0], dict):
        return type(value)(_shown(v) for v in value)
    return value


def job_kwargs(kwargs: dict[str, Any], parents: list[str]) -> dict[str, Any]:
    """A copy of ``kwargs`` for ``prepare``: with the upstream ids the worker reads, when there are any."""
    return {**kwargs, PARENTS_KEY: parents} if parents else dict(kwargs)


async def link_upstreams(core: ClientCore, job_id: str, parents: list[str]) -> None:
    """Make the written (waiting) job ``job_id`` wait for ``parents``; it is released at once if none still runs.

    Example::

        # not run: internal, the submit path of a job with upstream handles
        await link_upstreams(core, row.job_id, ["3f2a…", "77aa…"])
    """
    try:
        await core.call(lambda s: s.upstream.link(job_id, parents, now_ms=now_ms()), "submit a job to")
    except BaseException:
        # written waiting but not linked, nothing would ever release it: take it back (best effort; the
        # submit raises either way, and a job left behind expires with its definition)
        with contextlib.suppress(Exception):
            await AsyncJob(core, job_id).cancel()
        raise
