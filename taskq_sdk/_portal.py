"""An event loop in a daemon thread, and blocking calls into it: how the sync client wraps the async one.

It works in scripts, in threads and inside a running loop (Jupyter) without patching anything.
Ctrl-C (Jupyter's stop button) while blocked cancels the *wait* and re-raises
``KeyboardInterrupt``; the coroutine is cancelled on the portal's loop, jobs are untouched::

    portal = Portal("taskq-client")
    value = portal.call(some_coroutine_function, 1, 2)
    portal.stop()

The blocking classes built on a portal (``Client``, ``Job``, ``Batch``, ``ContentPipeline``) take
their methods' docstrings from their async twins with :func:`forward_docs`, so ``help()`` and
Jupyter's Shift-Tab show one text, written once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import re
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from .errors import ClientClosed

__all__ = ["Portal", "blocking_doc", "forward_docs"]

T = TypeVar("T")
P = ParamSpec("P")
C = TypeVar("C", bound=type)

_ASYNC_CLASS = re.compile(r"\bAsync(Client|Job|Batch|ContentPipeline)\b")
_ASYNC_WORDS = (("async for ", "for "), ("async with ", "with "), ("await ", ""))


def blocking_doc(text: str) -> str:
    """An async method's docstring as its blocking twin reads it: no ``await``, the blocking class names.

    Example::

        blocking_doc("job = await client.submit(...)  # an AsyncJob")   # 'job = client.submit(...)  # a Job'
    """
    for old, new in _ASYNC_WORDS:
        text = text.replace(old, new)
    text = _ASYNC_CLASS.sub(r"\1", text)
    return text.replace("an Job", "a Job").replace("an Batch", "a Batch").replace("an Client", "a Client")


def forward_docs(async_cls: type) -> Callable[[C], C]:
    """Class decorator: every public method and property of a blocking facade gets its async twin's docstring.

    The docstring is forwarded, not copied by hand: the facade's method keeps its own signature
    (its return types name the blocking classes), and its own docstring, if it has one, follows
    the forwarded text as a note on what differs when blocking. ``__wrapped__`` is deliberately
    not set: ``inspect.signature`` would then show the async twin's return type.

    Example::

        @forward_docs(AsyncJob)
        class Job:
            def status(self) -> JobStatus:
                return self._portal.call(self._job.status)

        help(Job.status)   # status(self) -> JobStatus, then AsyncJob.status's text
    """

    def apply(cls: C) -> C:
        for name, attr in list(vars(cls).items()):
            if name.startswith("_"):
                continue
            twin = inspect.getattr_static(async_cls, name, None)
            if isinstance(twin, property):
                twin = twin.fget
            text = inspect.getdoc(twin) if twin is not None else None
            if not text:
                continue
            if isinstance(attr, property):
                doc = _merge(blocking_doc(text), inspect.getdoc(attr))
                setattr(cls, name, property(attr.fget, attr.fset, attr.fdel, doc))
            elif inspect.isfunction(attr):
                attr.__doc__ = _merge(blocking_doc(text), inspect.getdoc(attr))
        return cls

    return apply


def _merge(forwarded: str, own: str | None) -> str:
    return forwarded if not own or own in forwarded else f"{forwarded}\n\n{own}"


class _Handoff:
    """One blocking call's coroutine on its way to the portal's loop, and the lock its caller waits on.

    The task's own coroutine keeps the outcome and releases the lock as it ends (no done callback,
    which would cost the loop one more pass before the caller wakes).
    """

    __slots__ = ("cancelled", "coro", "done", "error", "loop", "result", "task")

    def __init__(self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]) -> None:
        self.loop = loop
        self.coro: Coroutine[Any, Any, Any] | None = coro
        self.task: asyncio.Task[Any] | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.cancelled = False
        self.done = threading.Lock()
        self.done.acquire()

    def start(self) -> None:  # on the loop's thread
        coro, self.coro = self.coro, None
        if coro is None:  # abandoned before it started
            return
        self.task = self.loop.create_task(self._run(coro))

    async def _run(self, coro: Coroutine[Any, Any, Any]) -> None:
        try:
            self.result = await coro
        except asyncio.CancelledError:
            self.cancelled = True  # the caller raises; the task ends quietly
        except BaseException as exc:  # handed to the caller, who raises it
            self.error = exc
        finally:
            self.done.release()

    def abandon(self) -> None:
        """Cancel the call (Ctrl-C in the caller, or the portal stopped): its task, or its start."""

        def cancel() -> None:
            if self.task is not None:
                self.task.cancel()
            elif self.coro is not None:
                self.coro.close()
                self.coro = None

        try:
            self.loop.call_soon_threadsafe(cancel)
        except RuntimeError:  # the loop is closed: nothing runs any more
            pass


class Portal:
    """Runs an event loop in a daemon thread and lets other threads block on coroutines in it.

    Example::

        portal = Portal()
        portal.call(asyncio.sleep, 0.1)
        portal.stop()
    """

    def __init__(self, name: str = "taskq-portal") -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopped = False
        self._helpers: concurrent.futures.ThreadPoolExecutor | None = None
        self._helpers_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._ready.set)
        try:
            self._loop.run_forever()
        finally:
            try:
                pending = [t for t in asyncio.all_tasks(self._loop) if not t.done()]
                for t in pending:
                    t.cancel()
                if pending:
                    self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            finally:
                self._loop.close()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The portal's event loop (every arq/redis object of a sync client lives on it)."""
        return self._loop

    @property
    def running(self) -> bool:
        return not self._stopped and self._thread.is_alive()

    def in_portal_thread(self) -> bool:
        return threading.get_ident() == self._thread.ident

    def _check(self) -> None:
        if not self.running:
            raise ClientClosed("This client is closed. Create a new Client to continue.")
        if self.in_portal_thread():
            raise ClientClosed(
                "A blocking Client method was called from the client's own event-loop thread (for example "
                "inside a callback). Use the AsyncClient there, or hand the work to another thread."
            )

    def call(self, fn: Callable[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` on the portal's loop and block until it returns.

        The hand-off is one ``call_soon_threadsafe`` and one lock: the caller blocks on the lock,
        the task's done callback releases it (cheaper than a ``concurrent.futures.Future``, whose
        condition variable and callbacks cost about as much as a submit's own Python work).

        Example::

            portal.call(client.submit, "add", 1, 2)
        """
        self._check()
        coro = fn(*args, **kwargs)
        handoff = _Handoff(self._loop, coro)
        try:
            self._loop.call_soon_threadsafe(handoff.start)
        except RuntimeError:  # the loop closed since _check
            coro.close()
            raise ClientClosed("This client is closed. Create a new Client to continue.") from None
        try:
            self._block(handoff)
        except KeyboardInterrupt:
            handoff.abandon()
            raise
        if handoff.cancelled:
            if not self.running:
                raise ClientClosed("The client was closed while this call was waiting.") from None
            raise concurrent.futures.CancelledError()
        if handoff.error is not None:
            error, handoff.error = handoff.error, None  # no reference cycle through the traceback
            raise error
        result: T = handoff.result
        return result

    def _block(self, handoff: _Handoff) -> None:
        """Wait for a hand-off's task to end (Ctrl-C interrupts the lock wait); the caller's frame while blocked."""
        while not handoff.done.acquire(timeout=1.0):
            if not self.running:  # stopped before the task could start or finish
                handoff.abandon()
                raise ClientClosed("The client was closed while this call was waiting.")

    def submit(self, coro: Awaitable[T]) -> concurrent.futures.Future[T]:
        """Schedule a coroutine on the portal's loop without waiting for it."""
        if not self.running:
            raise ClientClosed("This client is closed. Create a new Client to continue.")

        async def _wrap() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(_wrap(), self._loop)

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run a plain callable on the portal's loop thread, soon."""
        if self.running:
            self._loop.call_soon_threadsafe(fn, *args)

    def run_in_thread(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        """Run a blocking callable in the portal's helper thread (done callbacks may block on the client).

        Example::

            portal.run_in_thread(print, "job done")
        """
        with self._helpers_lock:
            if self._helpers is None:
                self._helpers = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="taskq-callbacks")
            return self._helpers.submit(fn, *args)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop (cancelling what still runs on it) and join the thread (idempotent)."""
        with self._helpers_lock:
            if self._helpers is not None:
                self._helpers.shutdown(wait=False)
        if self._stopped:
            return
        self._stopped = True
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            if not self.in_portal_thread():
                self._thread.join(timeout)
