"""The first hour of a data scientist, through the API: each mistake a new user makes, and what taskq says.

Every test here failed on the code before issue 20's API part: the blocking classes' ``help()`` was
a one-liner or nothing, a wait on a job no worker serves hung silently, ``timeout=`` on a submit
reached the function, a misspelt keyword failed on the worker, ``Batch`` and ``Job`` answered the
same question with different types, and the reprs and messages said slightly wrong things. Real
server, real workers (in-process threads serving ``tests.jobfns``), the same story through
``Client`` and ``AsyncClient`` where both apply.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import pydoc
import traceback
from typing import Any

import pytest

from taskq_sdk import AsyncClient, BadArguments, Client, ConfigurationError, JobFailed, JobStatus
from taskq_sdk.batch import AsyncBatch, Batch
from taskq_sdk.config import Settings
from taskq_sdk.handles import AsyncJob, Job
from taskq_sdk.pipeline_integration import AsyncContentPipeline, ContentPipeline

from .conftest import Api, async_wait_until, wait_until

SYNC_FACADES = [(Client, AsyncClient), (Job, AsyncJob), (Batch, AsyncBatch), (ContentPipeline, AsyncContentPipeline)]


# --- 1. help() on the blocking classes ----------------------------------------------------------------------------
@pytest.mark.parametrize(("sync", "twin"), SYNC_FACADES, ids=[s.__name__ for s, _ in SYNC_FACADES])
def test_every_public_sync_method_has_its_async_twins_docstring(sync: type, twin: type) -> None:
    missing, differs = [], []
    for name, attr in vars(sync).items():
        if name.startswith("_") or not (inspect.isfunction(attr) or isinstance(attr, property)):
            continue
        doc = inspect.getdoc(attr)
        if not doc:
            missing.append(name)
            continue
        twin_attr = inspect.getattr_static(twin, name, None)
        twin_doc = inspect.getdoc(twin_attr) if twin_attr is not None else None
        # forwarded: the async text opens the sync docstring (``await`` dropped, class names made blocking)
        if twin_doc and doc.splitlines()[0] != twin_doc.splitlines()[0].replace("await ", "").replace("Async", ""):
            differs.append(name)
    assert not missing, f"{sync.__name__} methods without a docstring: {missing}"
    assert not differs, f"{sync.__name__} methods whose docstring is not their async twin's: {differs}"


def test_help_shows_the_real_parameters_and_the_full_text() -> None:
    text = pydoc.render_doc(Client.submit, renderer=pydoc.plaintext)
    assert "submit(self, fn" in text and "``_defer_until``" in text and "Example::" in text
    sig = inspect.signature(Client.map)
    assert {"chunk_size", "key", "star", "kwargs"} <= set(sig.parameters)
    assert "await" not in (Job.result.__doc__ or "") and "job.result(timeout=60" in (Job.result.__doc__ or "")
    assert inspect.signature(Job.result).return_annotation in ("Any", Any)
    assert inspect.signature(Batch.jobs).return_annotation == "list[Job]", "the facade keeps its own return types"


# --- 5. small ones: repr, ids, traceback wording ------------------------------------------------------------------
def test_repr_right_after_submit_says_queued_without_asking_the_server(api: Api, worker: Any) -> None:
    client = api.client()
    job = api(client.submit("add", 1, 2, _defer_by=30))
    assert repr(job).endswith(" add deferred>"), repr(job)
    job = api(client.submit("add", 1, 2))
    assert repr(job).endswith(" add queued>"), repr(job)


def test_two_chunk_jobs_of_a_batch_print_different_short_ids(api: Api, worker: Any) -> None:
    client = api.client()
    batch = api(client.map("double", range(4), chunk_size=2))
    a, b = batch.jobs()
    assert repr(a) != repr(b) and repr(a).split()[1].endswith(".0") and repr(b).split()[1].endswith(".1")
    api(batch.results(timeout=30))


def test_job_failed_points_to_the_traceback_where_it_prints(api: Api, worker: Any) -> None:
    client = api.client()
    job = api(client.submit("boom", 3))
    with pytest.raises(JobFailed) as info:
        api(job.result(timeout=30))
    printed = "".join(traceback.format_exception(info.value))
    assert "below" not in str(info.value) and "remote traceback printed above" in str(info.value)
    # the remote traceback (the cause) prints first, the JobFailed line after it
    assert printed.index("in boom") < printed.index(str(info.value))


# --- 4. Job and Batch answer alike --------------------------------------------------------------------------------
def test_batch_iterates_its_jobs_and_answers_like_a_job(api: Api, worker: Any) -> None:
    client = api.client()
    batch = api(client.map("add", [(1, 2), (3, 4), (5, 6)], star=True))
    jobs = list(batch)
    assert len(jobs) == 3 and all(type(j).__name__ in ("Job", "AsyncJob") for j in jobs)
    assert api(jobs[1].result(timeout=30)) == 7
    assert api(batch.results(timeout=30)) == [3, 7, 11]
    status = api(batch.status())
    assert status is JobStatus.complete and type(status) is type(api(jobs[0].status()))
    assert api(batch.cancel()) is False and api(jobs[0].cancel()) is False, "cancel() says bool on both"
    assert api(batch.cancelled()) is False and api(jobs[0].cancelled()) is False
    assert api(batch.running()) is False and api(jobs[0].running()) is False


def test_running_and_cancelled_like_concurrent_futures(api: Api, worker: Any) -> None:
    client = api.client()
    job = api(client.submit("sleeper", 30))
    wait_until(lambda: api(job.running()), timeout=20, what="the job running")
    assert api(job.cancel()) is True
    wait_until(lambda: api(job.cancelled()), timeout=20, what="the job cancelled")
    assert not api(job.running())


def test_await_a_batch_like_a_job(settings: Settings, worker: Any) -> None:
    async def story() -> None:
        async with AsyncClient(settings=settings) as client:
            batch = await client.map("double", range(5))
            assert await batch == [0, 2, 4, 6, 8]
            assert await (await client.submit("add", 1, 2)) == 3

    asyncio.run(story())


def test_client_gather_returns_results_in_order(api: Api, worker: Any) -> None:
    client = api.client()
    a = api(client.submit("add", 1, 2))
    b = api(client.submit("add", 3, 4))
    batch = api(client.map("double", range(3)))
    assert api(client.gather([b, a, batch], timeout=30)) == [7, 3, [0, 2, 4]]
    bad = api(client.submit("boom", 1))
    with pytest.raises(JobFailed):
        api(client.gather([a, bad], timeout=30))
    mixed = api(client.map("fail_if_flagged", [1, 2], kwargs={"flags": ""}))
    out = api(client.gather([a, bad, mixed], timeout=30, return_exceptions=True))
    assert out[0] == 3 and isinstance(out[1], JobFailed) and out[2] == [3, 6]
    with pytest.raises(ConfigurationError, match=r"client\.job\(id\)"):
        api(client.gather([a.id]))


# --- 3. one meaning per word: timeout= waits, _timeout= limits; keywords checked at submit --------------------------
def test_timeout_on_submit_is_refused_with_what_to_write_instead(api: Api, worker: Any) -> None:
    client = api.client()
    with pytest.raises(BadArguments, match=r"timeout= is a wait.*job\.result\(timeout=5\).*_timeout=5"):
        api(client.submit("add", 1, 2, timeout=5))
    with pytest.raises(BadArguments, match=r"batch\.results\(timeout=5\).*_timeout=5"):
        api(client.map("double", range(3), timeout=5))
    job = api(client.submit("add", 1, 2, _timeout=5))
    assert api(job.result(timeout=30)) == 3


def test_a_function_that_declares_timeout_gets_it(api: Api, worker: Any) -> None:
    client = api.client()
    assert api(api(client.submit("takes_timeout", 2, timeout=7)).result(timeout=30)) == 14


def test_a_misspelt_keyword_fails_at_submit_naming_the_parameters(api: Api, worker: Any) -> None:
    client = api.client()
    with pytest.raises(BadArguments, match=r"kwarg_echo\(\) takes no keyword argument 'scael'.*scale, tenant, x"):
        api(client.submit("kwarg_echo", 1, scael=2))
    with pytest.raises(BadArguments, match=r"'scael'"):
        api(client.map("kwarg_echo", [1, 2], kwargs={"scael": 2}))
    assert api(api(client.submit("kwarg_echo", 1, scale=2)).result(timeout=30))["scale"] == 2
    # a function taking **kwargs takes any keyword
    assert api(api(client.submit("echo", 1, anything=2)).result(timeout=30))


def test_an_unknown_signature_never_blocks_a_submit(api: Api, start_worker: Any, sync_redis: Any) -> None:
    from taskq_sdk._backend import layout

    old = start_worker()
    wait_until(lambda: sync_redis.exists(layout.signatures_key("default")), what="signatures published")
    old.stop(now=True, timeout=20)
    sync_redis.delete(layout.signatures_key("default"))  # as if served by older workers, which publish none
    client = api.client()
    job = api(client.submit("kwarg_echo", 1, scael=2))  # accepted: only a worker can tell now
    start_worker()
    with pytest.raises(JobFailed, match="scael"):
        api(job.result(timeout=30))


# --- 2. a wait with no live worker says so, once, and keeps waiting ----------------------------------------------
class _Notes:
    """A progress view that records what it is told (stands in for the bar or widget a user sees)."""

    def __init__(self) -> None:
        self.notices: list[str] = []

    def update(self, *_: Any) -> None: ...

    def close(self, *_: Any) -> None: ...

    def notice(self, text: str) -> None:
        self.notices.append(text)


def _known_names_but_no_worker(settings: Settings, start_worker: Any, caplog: pytest.LogCaptureFixture) -> Settings:
    """A new user's state: the registry knows the names from a worker that has stopped; notices after 0.5s."""
    caplog.set_level(logging.WARNING, logger="taskq_sdk")
    start_worker().stop(now=True, timeout=20)
    return settings.model_copy(update={"no_worker_notice": 0.5})


def _no_worker_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "taskq_sdk" and "is still waiting" in r.getMessage()]


def test_a_wait_without_a_worker_says_so_once_then_finishes_when_one_starts(
    settings: Settings, start_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    quick = _known_names_but_no_worker(settings, start_worker, caplog)
    with Client(settings=quick) as client:
        job = client.submit("add", 1, 2)
        view = _Notes()
        future = client.portal.submit(job.async_job.result(progress=view))  # what job.result() runs, no timeout
        wait_until(lambda: view.notices, timeout=15, what="the no-worker notice")
        assert "No live worker" in view.notices[0] and "still waiting" in view.notices[0]
        assert not future.done(), "it keeps waiting"
        start_worker()
        assert future.result(timeout=30) == 3
    assert len(view.notices) == 1 and len(_no_worker_warnings(caplog)) == 1, "said once"


def test_an_async_wait_without_a_worker_says_so_too(
    settings: Settings, start_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    quick = _known_names_but_no_worker(settings, start_worker, caplog)

    async def story() -> Any:
        async with AsyncClient(settings=quick) as client:
            job = await client.submit("add", 1, 2)
            waiting = asyncio.ensure_future(job.result())  # no timeout, no bar: the logger says it
            await async_wait_until(lambda: _no_worker_warnings(caplog), timeout=15, what="the warning")
            await asyncio.to_thread(start_worker)
            return await asyncio.wait_for(waiting, 30)

    assert asyncio.run(story()) == 3
    assert len(_no_worker_warnings(caplog)) == 1


def test_a_batch_wait_without_a_worker_says_so(
    settings: Settings, start_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    quick = _known_names_but_no_worker(settings, start_worker, caplog)
    with Client(settings=quick) as client:
        batch = client.map("double", range(4))
        view = _Notes()
        future = client.portal.submit(batch.async_batch.results(progress=view))  # type: ignore[arg-type]
        wait_until(lambda: view.notices, timeout=15, what="the batch's no-worker notice")
        assert "No live worker" in view.notices[0] and batch.id in view.notices[0]
        start_worker()
        assert future.result(timeout=30) == [0, 2, 4, 6]
        assert len(_no_worker_warnings(caplog)) == 1


def test_a_wait_with_a_live_worker_stays_quiet(
    settings: Settings, worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="taskq_sdk")
    with Client(settings=settings.model_copy(update={"no_worker_notice": 0.2})) as client:
        assert client.submit("sleeper", 0.8).result(timeout=30) == 0.8
    assert not _no_worker_warnings(caplog)
