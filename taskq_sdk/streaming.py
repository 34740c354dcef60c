"""Jobs that stream: a generator job's items reach readers while it runs.

Write the job as a generator (``def ... yield`` or ``async def ... yield``); the worker sends each
item to the server as it is produced, and ``job.stream()`` reads them as they come, blocking on the
server (no polling). The stream ends when the job ends: with the job's error (after the items it
produced) if it failed or was cancelled. ``job.result()`` is the list of items::

    @taskq_sdk.job
    def squares(n):
        for i in range(n):
            yield i * i

    job = client.submit(squares, 4)
    for item in job.stream():       # async: `async for item in ajob.stream()`
        print(item)                 # 0, 1, 4, 9 - as the job yields them
    job.result()                    # [0, 1, 4, 9]

Bounds: at most ``TASKQ_STREAM_MAX_ITEMS`` items and ``TASKQ_MAX_RESULT_BYTES`` bytes per job (the
items are its result); the item that crosses a bound fails the job with :class:`StreamTooLong`,
and the items before it stay readable. Items live as long as the job's result.

Re-runs: when an attempt ends without finishing (its worker died, or a transient error retried it),
the next attempt's items *replace* the earlier attempt's. A reader that already received items of the
earlier attempt gets a :class:`StreamRestart` marker, then the new attempt's items from the first; a
reader that starts later sees only the last attempt's items. Nothing is duplicated or lost beyond that.

Faults: a burst re-sent after a lost reply is written once; BUSY / READONLY / resets are waited out
for ``TASKQ_OUTAGE_BUDGET``, then the attempt is retried; a stream key overwritten or deleted by
something else fails the job (and a reader) with :class:`StreamCorrupted`, naming the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ._backend.connection import is_connection_error, is_transient_reply
from ._backend.stream_io import StreamAppender, StreamCorrupted, read_entries
from .config import Settings
from .errors import BrokerUnavailable, ConfigurationError, TaskqError, short_id
from .runtime import StopJob
from .serialization import Codec

if TYPE_CHECKING:
    from .handles import AsyncJob

__all__ = [
    "ItemWriter",
    "NotAStream",
    "NotStreaming",
    "StreamCorrupted",
    "StreamRestart",
    "StreamSlot",
    "StreamTooLong",
    "bind_stream",
    "consume_items",
    "is_item_stream",
    "item_sink",
    "item_writer",
    "patiently",
    "read_batches",
    "read_items",
    "refuse_isolated_stream",
    "run_streaming",
    "stream_item",
    "unbind_stream",
]

T = TypeVar("T")

#: items a worker holds before a producer waits for the server (per job): the server-side buffer is the stream
MAX_BUFFERED = 1000
#: items sent in one script call at most
BURST = 500
#: how long a reader blocks on the server before it looks at the job's state again (ms)
READ_BLOCK_MS = 2000


@dataclass(frozen=True)
class StreamRestart:
    """In a reader's stream: the job runs again (attempt ``attempt``) after this reader got ``discarded``
    items of an earlier attempt; the items that follow are the new attempt's, from its first.

    Example::

        shown = []
        for item in client.submit("count_up", 3).stream():
            if isinstance(item, StreamRestart):
                shown.clear()           # the earlier attempt's items are replaced
                continue
            shown.append(item)
    """

    attempt: int
    discarded: int


class StreamTooLong(TaskqError):
    """A streaming job yielded more items or bytes than its bound (the job fails with this; the items
    before the bound stay readable).

    Example::

        try:
            items = client.submit("count_up", 3).result(timeout=30)
        except JobFailed as exc:
            if exc.remote_type.endswith("StreamTooLong"): ...
    """


class NotAStream(TaskqError, TypeError):
    """``job.stream()`` on a job that returned a value instead of yielding items.

    Example::

        try:
            list(job.stream())
        except NotAStream:
            value = job.result()
    """

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(
            f"Job {short_id(job_id)} did not stream: its function returns a value instead of yielding "
            "items. Read it with job.result(); write the function as a generator (yield) to stream."
        )


def is_item_stream(value: Any) -> bool:
    """Whether a job function's return value is a generator (sync or async) whose items stream."""
    return inspect.isgenerator(value) or inspect.isasyncgen(value)


# ============================================================================ the worker's side
class ItemWriter:
    """Collects one attempt's items, sends them in bursts as they come, enforces the bounds.

    ``append(blobs, attempt=, seq=)`` writes to the server under the claim ('ok' | 'claim-lost'); ``on_lost``
    is called when the claim is gone (this copy must stop). Example::

        # not run: worker side, called by the engine with its own state
        writer = ItemWriter(appender.append, codec, job_id=jid, attempt=1, max_items=100_000, max_bytes=64 << 20)
        await writer.open(); await writer.put(item); items = await writer.close()
    """

    def __init__(
        self,
        append: Callable[..., Awaitable[str]],
        codec: Codec,
        *,
        job_id: str,
        attempt: int,
        max_items: int,
        max_bytes: int,
        on_lost: Callable[[], None] | None = None,
        patience: float = 10.0,
    ) -> None:
        self._append = append
        self.patience = patience
        self._codec = codec
        self.job_id = job_id
        self.attempt = attempt
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._on_lost = on_lost
        self.items: list[Any] = []
        self.bytes = 0
        self._pending: list[bytes] = []
        self._sent = 0  # items the server confirmed: the next burst's first index
        self._begin: int | None = attempt
        self._sender: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._handed = 0  # items a producer thread handed over
        self._refused: BaseException | None = None  # why an item handed over from a thread was not taken
        #: set when the attempt stopped (cancel, timeout, lost claim): a producer thread's next item stops it
        self.stopped = threading.Event()

    async def open(self) -> None:
        """Mark the attempt's start on the server (so readers know the job streams) before any item."""
        self._kick()
        await self._settle()

    async def put(self, item: Any) -> None:
        """Take one item: encode it (a typed error names it), check the bounds, queue it for the server;
        waits while the server lags too far behind."""
        self.put_nowait(item)
        if len(self._pending) >= MAX_BUFFERED:
            await self._settle()  # the server is slower than the producer: wait for it (bounded memory)

    def put_nowait(self, item: Any) -> None:
        """:meth:`put` without waiting for the server (for code on the worker's loop that cannot await)."""
        self._check()
        self._accept(item, self._codec.dumps(item, what=f"stream item {len(self.items)}"))

    def _check(self) -> None:
        if self._error is not None:
            raise self._error
        if self._refused is not None:
            raise self._refused
        if self.stopped.is_set():
            raise StopJob(f"job {self.job_id} stopped streaming")

    def put_from_thread(self, item: Any, loop: asyncio.AbstractEventLoop) -> None:
        """:meth:`put` from a producer thread: encoded here, handed to the loop without a round trip;
        every :data:`MAX_BUFFERED` items it waits for the server. An error surfaces at the next item."""
        self._check()
        blob = self._codec.dumps(item, what=f"stream item {self._handed}")
        self._handed += 1
        loop.call_soon_threadsafe(self._accept_quietly, item, blob)
        if self._handed % MAX_BUFFERED == 0:
            asyncio.run_coroutine_threadsafe(self._settle_quietly(), loop).result()

    def _accept_quietly(self, item: Any, blob: bytes) -> None:
        if self._error is not None or self._refused is not None or self.stopped.is_set():
            return
        try:
            self._accept(item, blob)
        except Exception as exc:  # a bound: the producer raises it at its next item (what came before is sent)
            self._refused = exc

    async def _settle_quietly(self) -> None:
        with contextlib.suppress(Exception):
            await self._settle()

    def _accept(self, item: Any, blob: bytes) -> None:
        index = len(self.items)
        if index >= self.max_items:
            raise StreamTooLong(
                f"job {self.job_id} yielded more than {self.max_items:,} items (TASKQ_STREAM_MAX_ITEMS); the "
                f"first {self.max_items:,} were streamed and stay readable. Yield fewer, larger items."
            )
        if self.bytes + len(blob) > self.max_bytes:
            raise StreamTooLong(
                f"job {self.job_id}'s items would take over {self.max_bytes:,} bytes (TASKQ_MAX_RESULT_BYTES: "
                f"they are its result); the first {index:,} items were streamed and stay readable. Yield "
                "references (paths, URLs) to large data instead."
            )
        self.bytes += len(blob)
        self.items.append(item)
        self._pending.append(blob)
        self._kick()

    def _kick(self) -> None:
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send())

    async def _settle(self) -> None:
        while self._sender is not None and not self._sender.done():
            await asyncio.shield(self._sender)
        if self._error is not None:
            raise self._error

    async def _send(self) -> None:
        while (self._pending or self._begin is not None) and self._error is None:
            burst, self._pending = self._pending[:BURST], self._pending[BURST:]
            try:
                out = await self._write(burst)
            except Exception as exc:
                self._error = exc
                return
            self._begin = None
            if out == "ok":
                self._sent += len(burst)
            if out == "claim-lost":
                self._error = StopJob(f"job {self.job_id}: claim lost to another worker; its items are discarded")
                self.stopped.set()
                if self._on_lost is not None:
                    self._on_lost()
            elif out != "ok":
                self._error = RuntimeError(f"the server refused the job's items: {out}")

    async def _write(self, burst: Sequence[bytes]) -> str:
        # an outage, a reset, BUSY or READONLY: try again for up to `patience` seconds (the worker's outage
        # budget), then fail the attempt with the error (a connection error is transient: the job is
        # retried). The same burst may be sent twice (its reply lost): the server skips what it has.
        # Any other error (a corrupt key) fails the attempt at once.
        try:
            return await patiently(
                lambda: self._append(burst, attempt=self.attempt, seq=self._sent),
                self.patience,
                lambda exc: is_transient_reply(exc) or is_connection_error(exc),
            )
        except Exception as exc:
            if is_transient_reply(exc):  # BUSY / READONLY past the budget: retried like an outage, not failed for good
                raise BrokerUnavailable(
                    f"job {self.job_id}: the server kept answering {str(exc)[:80]!r} for {self.patience:g} s "
                    "(TASKQ_OUTAGE_BUDGET) while the job streamed; this attempt stops and the job is retried"
                ) from exc
            raise

    async def close(self) -> list[Any]:
        """Send what is left; the attempt's items (its result), or the error that stopped the stream."""
        self._kick()
        await self._settle()
        if self._refused is not None:
            raise self._refused
        return self.items


async def patiently(call: Callable[[], Awaitable[T]], patience: float, again: Callable[[Exception], bool]) -> T:
    """``await call()``; while it raises an error ``again`` accepts (BUSY, a reset...), try again with a
    growing pause for up to ``patience`` seconds, then raise the last error.

    Example::

        import asyncio
        tries = []

        async def flaky() -> str:
            tries.append(1)
            if len(tries) < 3:
                raise ConnectionResetError("reset by peer")
            return "ok"

        asyncio.run(patiently(flaky, 5.0, lambda exc: isinstance(exc, ConnectionResetError)))   # 'ok', 3rd try
    """
    deadline = time.monotonic() + patience
    delay = 0.05
    while True:
        try:
            return await call()
        except Exception as exc:
            if not again(exc) or time.monotonic() + delay > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)


def refuse_isolated_stream(fn: Any) -> None:
    """Raise :class:`~taskq_sdk.errors.ConfigurationError` for a generator job marked ``isolate=True``
    (its items would have to cross processes, which is not supported).

    Example::

        # not run: worker side, called by the engine with its own state
        refuse_isolated_stream(spec.fn)   # in the worker, before starting the subprocess
    """
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise ConfigurationError(
            f"{getattr(fn, '__name__', fn)!r} is a generator marked isolate=True: a streaming job cannot run in "
            "its own process (its items would have to cross processes); drop isolate=True to stream its items"
        )


class NotStreaming(TaskqError, RuntimeError):
    """:func:`stream_item` called outside a job that a taskq worker runs (nowhere to send the item)."""


_slot: contextvars.ContextVar[StreamSlot | None] = contextvars.ContextVar("taskq_stream", default=None)


class StreamSlot:
    """One attempt's stream: its writer is made at the first item (most jobs never stream).

    Example::

        # not run: worker side, called by the engine with its own state
        slot = StreamSlot(make_writer, loop)
        slot.send(item)            # from the job's code: on the loop or in a thread
        await slot.flush()         # before the job's outcome is recorded
    """

    def __init__(self, make: Callable[[], ItemWriter], loop: asyncio.AbstractEventLoop) -> None:
        self._make = make
        self._loop = loop
        self._writer: ItemWriter | None = None

    @property
    def writer(self) -> ItemWriter:
        if self._writer is None:
            self._writer = self._make()
        return self._writer

    def send(self, item: Any) -> None:
        """Queue ``item`` (thread-safe); off the loop it waits while the server lags behind."""
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self.writer.put_nowait(item)
        else:
            self.writer.put_from_thread(item, self._loop)

    async def flush(self) -> None:
        """Send every queued item; raises what stopped the stream (a bound, a lost claim)."""
        if self._writer is not None:
            await self._writer.close()

    def stop(self) -> None:
        """The attempt ended (an error, a cancel, its time limit): later items from its threads are refused."""
        if self._writer is not None:
            self._writer.stopped.set()


def bind_stream(slot: StreamSlot | None) -> contextvars.Token[StreamSlot | None]:
    """Make ``slot`` the stream of the job running in this context (the worker's job wrapper)."""
    return _slot.set(slot)


def unbind_stream(token: contextvars.Token[StreamSlot | None]) -> None:
    """Undo :func:`bind_stream`."""
    _slot.reset(token)


def stream_item(item: Any) -> None:
    """Send one item to the running job's stream now; the job's return value stays its result.

    For jobs that return a result *and* show partial output while they run (a generator job streams
    its yields instead). Works from async and sync job code, threads included; raises
    :class:`NotStreaming` outside a job run by ``python -m taskq_sdk.worker`` (or a LocalCluster).

    Example::

        @taskq_sdk.job
        def train(epochs):
            for epoch in range(epochs):
                stream_item({"epoch": epoch, "loss": step()})
            return "model.pt"
    """
    slot = _slot.get()
    if slot is None:
        raise NotStreaming(
            "stream_item() works inside a job that a taskq worker runs (python -m taskq_sdk.worker or a "
            "LocalCluster); here there is no job stream to send the item to"
        )
    slot.send(item)


def item_sink() -> Callable[[Any], None] | None:
    """:func:`stream_item` when the running code is a job with a stream, else None (for optional streaming).

    Example::

        send = item_sink()
        if send is not None: send({"step": 1})
    """
    return stream_item if _slot.get() is not None else None


async def run_streaming(call: Callable[[], Awaitable[Any]], slot: StreamSlot | None, executor: Executor | None) -> Any:
    """Await the job function's ``call()``; stream a generator's items (the list is the value) and send
    what it queued with :func:`stream_item`, before its outcome is known (items before an error included).

    Example::

        # not run: worker side, called by the engine with its own state
        value = await run_streaming(lambda: fn(*args), slot, pool)
    """
    try:
        value = await call()
        if is_item_stream(value):
            if slot is None:
                raise ConfigurationError(
                    "this job is a generator, and its items stream only on taskq's own worker "
                    "(python -m taskq_sdk.worker or a LocalCluster), not on the stock arq command"
                )
            value = await consume_items(value, slot.writer, executor)
        elif asyncio.iscoroutine(value):  # a sync wrapper that returned a coroutine (3.11: not a generator)
            value = await value
        if slot is not None:
            await slot.flush()
        return value
    except BaseException:
        if slot is not None:
            slot.stop()
            with contextlib.suppress(BaseException):
                await slot.flush()
        raise


async def consume_items(value: Any, writer: ItemWriter, executor: Executor | None) -> list[Any]:
    """Run a job's generator to its end, streaming each item through ``writer``; its items as a list.

    A sync generator runs in ``executor`` (each item handed to the loop, waiting when the server lags);
    an async one runs here. Items produced before an error are sent before the error propagates.

    Example::

        # not run: worker side, called by the engine with its own state
        value = await consume_items(fn(*args), writer, pool)
    """
    await writer.open()
    try:
        if inspect.isasyncgen(value):
            try:
                async for item in value:
                    await writer.put(item)
            finally:
                await value.aclose()
        else:
            loop = asyncio.get_running_loop()
            cv = contextvars.copy_context()  # the job's binding: report_progress works inside the generator
            await loop.run_in_executor(executor, cv.run, _drain_in_thread, value, writer, loop)
    except BaseException:
        writer.stopped.set()
        with contextlib.suppress(BaseException):
            await writer.close()  # what was produced before the error is readable
        raise
    return await writer.close()


def _drain_in_thread(gen: Any, writer: ItemWriter, loop: asyncio.AbstractEventLoop) -> None:
    try:
        for item in gen:
            writer.put_from_thread(item, loop)
    finally:
        gen.close()


def item_writer(
    redis: Any,
    lay: Any,
    codec: Codec,
    settings: Settings,
    job_id: str,
    attempt: int,
    token: Callable[[], str],
    on_lost: Callable[[], None],
) -> ItemWriter:
    """The writer one attempt of generator job ``job_id`` streams its items through (a worker's side).

    Example::

        # not run: worker side, called by the engine with its own state
        writer = item_writer(pool, lay, codec, settings, job_id, 2, lambda: token, on_lost=stop)
    """
    ttl_ms = int((settings.keep_result + settings.tombstone_ttl) * 1000)
    appender = StreamAppender(redis, lay, job_id, token, ttl_ms=ttl_ms)
    return ItemWriter(
        appender.append,
        codec,
        job_id=job_id,
        attempt=attempt,
        max_items=settings.stream_max_items,
        max_bytes=settings.max_result_bytes,
        on_lost=on_lost,
        patience=max(settings.outage_budget, 1.0),
    )


# ============================================================================ the reader's side
async def read_items(job: AsyncJob) -> AsyncIterator[Any]:
    """The items of ``job``'s stream, as they come (see the module docstring); ``AsyncJob.stream()``.

    Example::

        ajob = await client.submit("count_up", 3)
        async for item in read_items(ajob): print(item)
    """
    async for batch in read_batches(job):
        for item in batch:
            yield item


async def read_batches(job: AsyncJob) -> AsyncIterator[list[Any]]:
    """:func:`read_items` in the batches the server returns them (one list per read): what the blocking
    ``Job.stream()`` fetches per call into the client's loop.

    Example::

        ajob = await client.submit("count_up", 3)
        async for batch in read_batches(ajob): print(len(batch))
    """
    core = job.core
    after, attempt, given = "0-0", None, 0
    block = min(READ_BLOCK_MS, int(core.settings.socket_timeout * 500))
    while True:
        store = core.open()

        async def read(block_ms: int | None, after: str = after) -> list[Any]:
            # a server busy with a script (BUSY) or loading answers later: wait for it (the outage budget)
            return await patiently(
                lambda: core.call(lambda s: read_entries(s.redis, s.layout, job.id, after, block_ms=block_ms), "read"),
                core.settings.outage_budget,
                is_transient_reply,
            )

        entries = await read(block)
        if not entries:
            if not (await job.status()).finished:
                continue
            entries = await read(None)  # it ended meanwhile: a last look (its end entry may be there)
            if not entries:
                await _ended_unstreamed(job, streamed=attempt is not None)
                return
        batch: list[Any] = []
        for entry in entries:
            after = entry.id
            if entry.kind == "b":
                if given and entry.attempt != attempt:
                    batch.append(StreamRestart(attempt=entry.attempt, discarded=given))
                    given = 0
                attempt = entry.attempt
            elif entry.kind == "i":
                given += 1
                batch.append(store.codec.loads(entry.value))
            elif entry.kind == "e":
                if batch:
                    yield batch
                if entry.state != "complete":
                    await job.result()  # raises the job's error, as result() does
                return
        if batch:
            yield batch


async def _ended_unstreamed(job: AsyncJob, *, streamed: bool) -> None:
    """The job finished and its stream has nothing more: raise its error, or say it never streamed."""
    await job.result()  # failed / cancelled / expired: raises as result() does
    if not streamed:
        raise NotAStream(job.id)
