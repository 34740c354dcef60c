"""Auto-pipelining: commands issued in the same event-loop tick travel to the server in one write.

A client's hot calls (a submit's Lua script, a status read) go through one dedicated connection:
each call packs its command into a buffer and awaits a future; once per loop tick the buffer is
written in one ``send``; the replies are parsed, in order, where the bytes arrive (the transport's
``data_received``, with hiredis) and resolve the futures there, with no reader task in between
(redis-py's reader task is the fallback without hiredis). So
100 ``asyncio.gather``-ed submits (or 100 threads sharing one ``Client``) cost a few round trips,
not 100, and a lone call skips redis-py's per-command machinery (pool lock, retry wrapper, a task
per socket timeout). The API does not change, and each caller's calls still run in the order it
issued them (one connection, first in, first out)::

    pipe = AutoPipeline.for_redis(redis)           # None where it cannot apply (a cluster client)
    reply = await pipe.evalsha(script, [job_id, "0"])
    await pipe.close()

A connection failure fails every call in flight with redis-py's own ``ConnectionError`` (or
``TimeoutError`` after the socket timeout, for a hung server); callers fall back to the regular
pool (:meth:`Store._run`), which has the reconnect and retry policy. Error replies (``BUSY``,
``NOSCRIPT``, ``WRONGTYPE``...) reach only the call they answer, as the exceptions redis-py raises;
``READONLY`` (the server became a replica in a failover) drops the connection like a failure, so the
callers fall back to the pool and the next call connects afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import InvalidResponse, NoScriptError, ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["AutoPipeline", "pack"]

#: after a failed connect, seconds during which calls go straight to the regular pool (no double wait)
COOL_DOWN = 1.0

_c_pack: Callable[..., bytes] | None
try:
    from hiredis import pack_command as _c_pack
except ImportError:  # redis-py without hiredis: the pure-Python packer
    _c_pack = None

_MORE = object()  # hiredis: the buffer holds no complete reply yet


def _hiredis_reader(parser: Any) -> Any:
    """A hiredis reader that builds the same exceptions as ``parser`` (redis-py's), or None without hiredis."""
    try:
        import hiredis
    except ImportError:  # redis-py's pure-Python parser: its reader task reads the replies
        return None
    parse_error = getattr(parser, "parse_error", None)
    if parse_error is None:
        return None
    return hiredis.Reader(protocolError=InvalidResponse, replyError=parse_error, notEnoughData=_MORE)


async def run_scripts_piped(pipe: AutoPipeline, calls: list[tuple[Any, list[Any]]]) -> list[Any]:
    """Run registered scripts in one write on the auto-pipeline; their results in order (as ``run_scripts``).

    A script the server lacks (``NOSCRIPT``, after a restart) is loaded and only the refused calls run
    again (the others ran already); the first error reply is raised once every call has answered.

    Example::

        finish_out, claim_out = await run_scripts_piped(pipe, [(finish, fargv), (claim, cargv)])
    """
    futs = await pipe.send_many([pack_evalsha(script, args) for script, args in calls])
    results = await _replies(futs)
    refused = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
    if refused:
        for script in {calls[i][0].sha: calls[i][0] for i in refused}.values():
            await pipe.execute("SCRIPT", "LOAD", script.script)
        again = await pipe.send_many([pack_evalsha(*calls[i]) for i in refused])
        for i, r in zip(refused, await _replies(again), strict=True):
            results[i] = r
    for r in results:
        if isinstance(r, Exception):
            raise r
    return results


async def _replies(futs: list[asyncio.Future[Any]]) -> list[Any]:
    out: list[Any] = []
    try:
        for fut in futs:
            try:
                out.append(await fut)
            except Exception as exc:  # an error reply answers its call only; a lost connection fails them all
                out.append(exc)
    except BaseException:  # cancelled: the replies still to come are read and dropped
        for fut in futs:
            fut.cancel()
        raise
    return out


class _Replies(asyncio.Protocol):
    """The connection's protocol once the pipeline owns it: bytes go straight to the pipeline's parser."""

    def __init__(self, pipe: AutoPipeline, reader: Any) -> None:
        self.pipe = pipe
        self.reader = reader

    def data_received(self, data: bytes) -> None:
        self.pipe._on_data(self, data)

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.pipe._on_lost(self, exc)


def pack(args: tuple[Any, ...] | list[Any]) -> bytes:
    """One command in the server's wire format (RESP); arguments are bytes, str, int or float.

    Example::

        pack(("GET", "k"))   # b'*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\nk\\r\\n'
    """
    if _c_pack is not None:  # hiredis packs in C, ~2.5x faster for a submit's 20-odd arguments
        try:
            return _c_pack(args if type(args) is tuple else tuple(args))
        except TypeError:
            pass  # what it refuses, the loop below refuses with the SDK's message
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        kind = type(a)
        if kind is str:
            a = a.encode()
        elif kind is int:
            a = b"%d" % a
        elif kind is not bytes:
            if isinstance(a, bool) or not isinstance(a, bytes | str | int | float):
                raise TypeError(f"cannot send {type(a).__name__} to the server")
            a = a.encode() if isinstance(a, str) else bytes(a) if isinstance(a, bytes) else repr(a).encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(a), a))
    return b"".join(parts)


def pack_evalsha(script: Any, args: list[Any]) -> bytes:
    """``EVALSHA <sha> 0 *args`` in the wire format.

    Example::

        pack_evalsha(redis.register_script("return 1"), [])
    """
    return pack(("EVALSHA", script.sha, 0, *args))


class AutoPipeline:
    """Coalesces concurrent commands of one event loop into pipelined writes on one connection.

    Example::

        pipe = AutoPipeline.for_redis(redis)
        a, b = await asyncio.gather(pipe.execute("GET", "a"), pipe.execute("GET", "b"))  # one round trip
    """

    def __init__(self, redis: Redis) -> None:
        self._pool: Any = redis.connection_pool
        self._conn: Any = None
        self._buffer: list[bytes] = []
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._flush_due = False
        self._reader: asyncio.Task[None] | None = None
        #: with hiredis, the connection's transport and the protocol that parses its replies (no reader task)
        self._transport: asyncio.BaseTransport | None = None
        self._replies: _Replies | None = None
        self._connecting: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timeout: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._progress = 0.0  # loop time of the last reply (or of a write to an idle connection)
        self._cool_until = 0.0
        self._closed = False
        self._closing: set[asyncio.Task[Any]] = set()
        #: writes made, and commands they carried (for benchmarks and tests)
        self.writes = 0
        self.commands = 0

    @classmethod
    def for_redis(cls, redis: Any) -> AutoPipeline | None:
        """An auto-pipeline over ``redis``'s connection settings, or None where it cannot apply.

        It needs a plain (or Sentinel) connection pool and redis-py's asyncio connection internals;
        anything else (a Redis Cluster client, an unknown redis-py) keeps the regular path.
        """
        pool = getattr(redis, "connection_pool", None)
        if not isinstance(redis, Redis) or pool is None or not hasattr(pool, "make_connection"):
            return None
        if not all(hasattr(pool.connection_class, name) for name in ("connect", "disconnect", "socket_timeout")):
            return None
        return cls(redis)

    @property
    def usable(self) -> bool:
        """False while closed or cooling down after a failed connect (callers use the regular pool)."""
        return not self._closed and time.monotonic() >= self._cool_until

    # ------------------------------------------------------------------ calls
    async def execute(self, *args: Any) -> Any:
        """Send one command with whatever else this tick sends, and return its reply.

        Raises redis-py's ``ConnectionError``/``TimeoutError`` when the connection fails (then the
        command may or may not have run), and the error reply's exception for an error reply.
        """
        return await self.send(pack(args))  # a bad argument fails in pack, before anything is queued

    async def send(self, data: bytes) -> Any:
        """Send one command already in the wire format (:func:`pack`) and return its reply, as :meth:`execute`."""
        (fut,) = await self.send_many([data])
        return await fut

    async def send_many(self, commands: list[bytes]) -> list[asyncio.Future[Any]]:
        """Queue commands in the wire format to go out together; one future per reply, in order.

        With nothing in flight they go out at once, in one write; else with the next one.

        Example::

            futs = await pipe.send_many([pack(("GET", "a")), pack(("GET", "b"))])
            a, b = [await f for f in futs]
        """
        if self._replies is None and (self._conn is None or self._conn._writer is None or self._reader is None):
            await self._connect()
        loop = self._loop
        assert loop is not None
        n = len(commands)
        futs: list[asyncio.Future[Any]] = [loop.create_future()] if n == 1 else [loop.create_future() for _ in commands]
        if not self._waiting:
            # nothing in flight: out at once (calls of the same tick that follow share the next write)
            self._waiting.extend(futs)
            self._progress = loop.time()
            self._write(commands[0] if n == 1 else b"".join(commands), n)
            if self._timer is None and self._timeout:
                self._timer = loop.call_later(self._timeout, self._check_timeout)
        else:
            self._waiting.extend(futs)
            self._buffer.extend(commands)
            if not self._flush_due:
                self._flush_due = True
                loop.call_soon(self._flush)
        return futs

    async def evalsha(self, script: Any, args: list[Any]) -> Any:
        """Run a registered script (``redis.register_script``) by digest; loads it once if the server lacks it."""
        try:
            return await self.send(pack_evalsha(script, args))
        except NoScriptError:
            await self.execute("SCRIPT", "LOAD", script.script)
            return await self.execute("EVALSHA", script.sha, 0, *args)

    # ------------------------------------------------------------------ plumbing
    async def _connect(self) -> Any:
        if self._closed:
            raise RedisConnectionError("the client's pipeline is closed")
        if self._connecting is None:
            self._connecting = asyncio.Lock()
            self._loop = asyncio.get_running_loop()
        async with self._connecting:
            conn = self._conn
            if self._replies is not None or (
                conn is not None and conn._writer is not None and self._reader is not None
            ):
                return conn
            if conn is None:
                conn = self._pool.make_connection()
            try:
                await conn.connect()
                parser = conn._parser
                if not hasattr(parser, "read_response"):
                    raise RedisConnectionError("unsupported redis-py parser")
            except BaseException:
                self._cool_until = time.monotonic() + COOL_DOWN
                with contextlib.suppress(Exception):
                    await conn.disconnect(nowait=True)
                raise
            self._conn = conn
            self._timeout = conn.socket_timeout or None
            reader = _hiredis_reader(parser)
            transport = getattr(conn._writer, "transport", None)
            stream = getattr(conn, "_reader", None)
            if reader is not None and transport is not None and stream is not None and not stream._buffer:
                # take the transport over: replies resolve their calls where the bytes arrive
                self._replies = _Replies(self, reader)
                self._transport = transport
                transport.set_protocol(self._replies)
            else:
                self._reader = asyncio.create_task(self._read(conn, parser), name="taskq-autopipe")
            return conn

    def _write(self, data: bytes, count: int) -> None:
        self.writes += 1
        self.commands += count
        transport = self._transport
        if transport is not None:
            try:
                transport.write(data)  # type: ignore[attr-defined]
            except Exception as exc:
                self._fail(RedisConnectionError(f"could not write to the server: {exc}"))
            return
        writer = self._conn._writer if self._conn is not None else None
        if writer is None:
            self._fail(RedisConnectionError("the connection to the server was lost"))
            return
        try:
            writer.write(data)
        except Exception as exc:  # a closed transport: fail now (the reader may see nothing)
            self._fail(RedisConnectionError(f"could not write to the server: {exc}"))

    def _flush(self) -> None:
        self._flush_due = False
        if not self._buffer:
            return
        data = b"".join(self._buffer) if len(self._buffer) > 1 else self._buffer[0]
        count = len(self._buffer)
        self._buffer.clear()
        self._write(data, count)

    def _fail(self, exc: BaseException) -> None:
        """Fail every call in flight (and drop what is buffered) with ``exc``; the connection is dropped."""
        self._buffer.clear()
        waiting, self._waiting = self._waiting, deque()
        for fut in waiting:
            if not fut.done():
                fut.set_exception(exc)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        self._replies = self._transport = None  # late bytes of the old transport reach no call
        # never reuse this connection: late replies of the failed calls may still arrive on it
        conn, self._conn = self._conn, None
        if conn is not None:
            task = asyncio.ensure_future(conn.disconnect(nowait=True))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def _check_timeout(self) -> None:
        """No reply for the socket timeout while calls wait: the server hangs; fail them, drop the connection."""
        self._timer = None
        if not self._waiting or self._loop is None or not self._timeout:
            return
        quiet = self._loop.time() - self._progress
        if quiet >= self._timeout:
            self._fail(RedisTimeoutError(f"Timeout reading from the server (no reply in {self._timeout:g}s)"))
        else:
            self._timer = self._loop.call_later(self._timeout - quiet, self._check_timeout)

    def _on_data(self, replies: _Replies, data: bytes) -> None:
        """Parse what arrived and resolve the calls it answers, in order (the transport's callback)."""
        if replies is not self._replies:
            return  # a dropped connection's late bytes
        reader = replies.reader
        reader.feed(data)
        self._progress = self._loop.time() if self._loop is not None else 0.0
        while True:
            try:
                reply = reader.gets()
            except Exception as exc:  # a protocol error: the stream cannot be trusted any more
                self._fail(RedisConnectionError(f"unreadable reply from the server: {exc}"))
                return
            if reply is _MORE or not self._answer(reply):
                return

    def _answer(self, reply: Any) -> bool:
        """Resolve the oldest call in flight with ``reply``; False when the connection had to be dropped."""
        if not self._waiting:
            self._fail(RedisConnectionError("a reply nobody asked for: the connection is out of step"))
            return False
        fut = self._waiting.popleft()
        if isinstance(reply, ReadOnlyError | RedisConnectionError):
            # a replica now (a failover), or the server is going away: this connection is done; the
            # callers fall back to the pool, whose connections find the new primary (Sentinel) or retry
            lost = (
                RedisConnectionError(f"the server became read-only ({reply}); reconnecting")
                if isinstance(reply, ReadOnlyError)
                else reply
            )
            if not fut.done():
                fut.set_exception(lost)
            self._fail(lost)
            return False
        if fut.done():  # its caller was cancelled: the reply is read and dropped
            return True
        if isinstance(reply, BaseException):  # an error reply answers one call only
            fut.set_exception(reply)
        else:
            fut.set_result(reply)
        return True

    def _on_lost(self, replies: _Replies, exc: Exception | None) -> None:
        if replies is self._replies:
            self._fail(RedisConnectionError(f"the connection to the server was lost ({exc or 'closed by the server'})"))

    async def _read(self, conn: Any, parser: Any) -> None:
        """The reader task without hiredis: redis-py's parser reads each reply; :meth:`_answer` resolves it."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                reply: Any = await parser.read_response()
                self._progress = loop.time()
                if not self._answer(reply):
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the connection failed or closed
            if self._reader is asyncio.current_task():
                self._fail(exc if isinstance(exc, RedisConnectionError) else RedisConnectionError(str(exc)))

    async def close(self) -> None:
        """Stop the reader and close the connection (idempotent); calls in flight fail."""
        self._closed = True
        reader = self._reader
        self._fail(RedisConnectionError("the client was closed"))
        if reader is not None:
            with contextlib.suppress(BaseException):
                await reader
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
