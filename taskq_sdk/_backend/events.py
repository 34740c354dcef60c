"""One pub/sub connection per client that fans job events out to whoever waits on them.

Waiters subscribe to a job's channel, then check the job's state, then wait for an event; a
missed event is covered by the waiter's fallback re-check, and a reconnect is announced to every
subscriber (``{"e": "reconnected"}``) so each re-checks at once::

    async with hub.subscribe(job_channel(job_id)) as sub:
        ...                         # check state first
        event = await sub.get(timeout=1.0)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import msgpack
from redis.asyncio import Redis

from .._aio import stop_tasks
from .._names import tenant_of
from ..config import Settings
from . import layout as arq_layout
from .connection import is_connection_error, make_redis
from .keys import KeyLayout
from .layout import PUSH_MAGIC, REPLY_MAGIC

logger = logging.getLogger("taskq_sdk.events")

__all__ = ["EventHub", "Subscription"]

RESULT_MAGIC = b"\xc1TQ"  # the wire envelope's header: a 'done' notice carrying its result
PING_EVERY = 5.0  # seconds of silence before the subscriber pings the server
DEAD_AFTER = 15.0  # seconds without any answer after which the connection is rebuilt


class Subscription:
    """A queue of events for one channel; several waiters on one channel each get their own.

    Example::

        event = await sub.get(timeout=1.0)   # dict like {"e": "done", "s": "complete"}, or None
    """

    __slots__ = ("_expiry", "_getters", "_items", "active", "adopted", "channel", "expired", "local")

    def __init__(self, channel: str) -> None:
        self.channel = channel
        #: events not yet taken, and the getters waiting for one (a future each: an event wakes its
        #: getter directly, with no queue task or wait_for task in between)
        self._items: collections.deque[dict[str, Any]] = collections.deque()
        self._getters: collections.deque[asyncio.Future[None]] = collections.deque()
        #: prepared subscriptions (``EventHub.prepare`` / ``expect``): whether a waiter took it over / it lapsed
        self.local = False
        self.active = False
        self.adopted = False
        self.expired = False
        self._expiry: asyncio.TimerHandle | None = None

    def put(self, event: dict[str, Any]) -> None:
        self._items.append(event)
        self._wake_next()

    def _wake_next(self) -> None:
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return

    async def get(self, timeout: float | None) -> dict[str, Any] | None:
        """The next event, or ``None`` after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                while not self._items:
                    getter = asyncio.get_running_loop().create_future()
                    self._getters.append(getter)
                    try:
                        await getter
                    except BaseException:
                        getter.cancel()
                        if getter in self._getters:
                            self._getters.remove(getter)
                        elif self._items:  # woken, then cancelled or timed out: the event is the next getter's
                            self._wake_next()
                        raise
                return self._items.popleft()
        except TimeoutError:
            return None

    def drain(self) -> list[dict[str, Any]]:
        """Everything queued right now, without waiting."""
        out = list(self._items)
        self._items.clear()
        return out


class EventHub:
    """Shares one subscriber connection among all waiters of a client.

    Example::

        hub = EventHub(settings)
        async with hub.subscribe(job_channel("abc")) as sub: ...
        await hub.close()
    """

    def __init__(self, settings: Settings, layout: KeyLayout | None = None) -> None:
        self._settings = settings
        self._layout: KeyLayout = layout or arq_layout
        self._redis: Redis | None = None
        self._pubsub: Any = None
        self._subs: dict[str, set[Subscription]] = {}
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._last_heard = time.monotonic()
        self._ping_sent: float | None = None
        self._lapsing: set[asyncio.Task[None]] = set()
        #: waiters fed by a reply channel (no server subscription of their own), by job channel
        self._local: dict[str, set[Subscription]] = {}
        self._replies: dict[str, Subscription] = {}  # reply channels held for the hub's lifetime
        #: expected subscriptions in the order they lapse (loop time, sub): one sweep timer for them all
        self._expecting: collections.deque[tuple[float, Subscription]] = collections.deque()
        self._sweep: asyncio.TimerHandle | None = None
        #: bumped when the connection is lost: an event published meanwhile may be missed
        self.epoch = 0

    async def reply_channel(self, channel: str, *, confirm: float = 2.0) -> int | None:
        """Subscribe to ``channel`` for the hub's lifetime (once); the epoch it is live in, or None.

        Events of jobs submitted with this reply channel reach :meth:`local` waiters through it.

        Example::

            epoch = await hub.reply_channel(reply_channel("acme", client_id))
        """
        sub = self._replies.get(channel)
        if sub is None:
            sub = Subscription(channel)
            await self._add(sub, confirm)
            self._replies[channel] = sub
        fut = self._confirmed.get(channel)
        if fut is None or not fut.done() or sub not in self._subs.get(channel, ()):
            return None  # not confirmed (yet): jobs are followed on their own channels instead
        return self.epoch

    def expect(self, channel: str, *, ttl: float = 10.0) -> Subscription:
        """Start keeping the events that reply channels bring for ``channel``; adopt it with :meth:`local`.

        A client expects the channel of a job it submits with its reply channel, so a wait right
        after the submit misses no event. Unadopted, it lapses after ``ttl`` (events kept no more).

        Example::

            sub = hub.expect(job_channel(job_id))
            ... submit ...
            with hub.local(job_channel(job_id), prepared=sub) as sub: ...
        """
        sub = Subscription(channel)
        sub.local = sub.active = True
        self._local.setdefault(channel, set()).add(sub)
        # no timer per submit (a heap entry and a callback each): one sweep lapses them in order
        loop = asyncio.get_running_loop()
        due = loop.time() + ttl
        expecting = self._expecting
        if expecting and due < expecting[-1][0]:  # a shorter ttl than the last one: a timer of its own
            sub._expiry = loop.call_at(due, self._lapse, sub)
            return sub
        expecting.append((due, sub))
        if self._sweep is None:
            self._sweep = loop.call_at(due, self._sweep_expected)
        return sub

    def _sweep_expected(self) -> None:
        """Lapse the expected subscriptions that are due and nobody adopted; set the timer for the next."""
        self._sweep = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        expecting = self._expecting
        while expecting and expecting[0][0] <= now:
            _, sub = expecting.popleft()
            self._lapse(sub)  # adopted or released ones are skipped there
        if expecting:
            self._sweep = loop.call_at(expecting[0][0], self._sweep_expected)

    def _drop_local(self, sub: Subscription) -> None:
        subs = self._local.get(sub.channel)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._local[sub.channel]

    @contextlib.contextmanager
    def local(self, channel: str, *, prepared: Subscription | None = None) -> Iterator[Subscription]:
        """Wait for a job's events that arrive on a reply channel, without subscribing to ``channel``.

        ``prepared``: a subscription from :meth:`expect` to take over (if it has not lapsed).

        Example::

            with hub.local(job_channel(job_id)) as sub:
                event = await sub.get(timeout=5)
        """
        if prepared is not None and prepared.local and not prepared.expired and not prepared.adopted:
            prepared.adopted = True
            if prepared._expiry is not None:
                prepared._expiry.cancel()
            sub = prepared
        else:
            sub = Subscription(channel)
            sub.local = True
            self._local.setdefault(channel, set()).add(sub)
        try:
            yield sub
        finally:
            self._drop_local(sub)

    async def prepare(self, channel: str, *, ttl: float = 10.0) -> Subscription:
        """Send a SUBSCRIBE for ``channel`` now without waiting for its confirmation; adopt it later.

        A client prepares the channel of a job it is about to submit, so that a wait right after
        the submit needs no extra round trip and misses no event. Unadopted, it lapses after ``ttl``.

        Example::

            sub = await hub.prepare(job_channel(job_id))
            ... submit ...
            async with hub.subscribe(job_channel(job_id), prepared=sub) as sub: ...
        """
        sub = Subscription(channel)
        await self._add(sub, confirm=0)
        sub.active = sub in self._subs.get(channel, ())
        if sub.active:
            sub._expiry = asyncio.get_running_loop().call_later(ttl, self._lapse, sub)
        return sub

    def _lapse(self, sub: Subscription) -> None:
        if sub.adopted or sub.expired:
            return
        sub.expired = True
        if sub.local:
            self._drop_local(sub)
            return
        task = asyncio.ensure_future(self._remove(sub))
        self._lapsing.add(task)
        task.add_done_callback(self._lapsing.discard)

    def release(self, sub: Subscription) -> None:
        """Drop a prepared (or expected) subscription nobody will adopt (a handle never waited on)."""
        if sub._expiry is not None:
            sub._expiry.cancel()
        self._lapse(sub)

    @contextlib.asynccontextmanager
    async def subscribe(
        self, channel: str, *, confirm: float = 2.0, prepared: Subscription | None = None
    ) -> AsyncIterator[Subscription]:
        """Subscribe to ``channel`` for the duration of the block (confirmed by the server first).

        ``prepared``: a subscription from :meth:`prepare` to take over (if it has not lapsed).
        """
        if prepared is not None and prepared.active and not prepared.expired and not prepared.adopted:
            prepared.adopted = True
            if prepared._expiry is not None:
                prepared._expiry.cancel()
            sub = prepared
            fut = self._confirmed.get(channel)
            if fut is not None and not fut.done():
                with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(fut), confirm)
        else:
            sub = Subscription(channel)
            await self._add(sub, confirm)
        try:
            yield sub
        finally:
            await self._remove(sub)

    async def _add(self, sub: Subscription, confirm: float) -> None:
        async with self._lock:
            if self._closed:
                raise RuntimeError("event hub closed")
            subs = self._subs.setdefault(sub.channel, set())
            subs.add(sub)
            first = len(subs) == 1
            if first:
                if self._pubsub is None:
                    self._redis = make_redis(self._settings, for_pubsub=True)
                    self._pubsub = self._redis.pubsub()
                fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._confirmed[sub.channel] = fut
                try:
                    await self._pubsub.subscribe(sub.channel)
                except Exception as exc:
                    if not is_connection_error(exc):
                        subs.discard(sub)
                        if not subs:
                            self._subs.pop(sub.channel, None)
                            self._confirmed.pop(sub.channel, None)
                        raise
                    # stay registered: the reader reconnects and subscribes every registered channel
                    # again (meanwhile a waiter falls back to polling)
                if self._reader is None or self._reader.done():
                    self._reader = asyncio.create_task(self._read(), name="taskq-events")
            fut_or_none = self._confirmed.get(sub.channel)
        if confirm > 0 and fut_or_none is not None and not fut_or_none.done():
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(fut_or_none), confirm)

    async def _remove(self, sub: Subscription) -> None:
        async with self._lock:
            subs = self._subs.get(sub.channel)
            if subs is None:
                return
            subs.discard(sub)
            if subs:
                return
            del self._subs[sub.channel]
            self._confirmed.pop(sub.channel, None)
            if self._pubsub is not None and not self._closed:
                with contextlib.suppress(Exception):
                    await self._pubsub.unsubscribe(sub.channel)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        channel = message.get("channel")
        if isinstance(channel, bytes):
            channel = channel.decode()
        if kind == "subscribe" and isinstance(channel, str):
            fut = self._confirmed.get(channel)
            if fut is not None and not fut.done():
                fut.set_result(None)
            return
        if kind != "message" or not isinstance(channel, str):
            return
        data = message.get("data") or b"{}"
        targets = self._subs.get(channel, ())
        if isinstance(data, bytes) and data.startswith(REPLY_MAGIC):
            # an event of a job this client submitted: to the waiters of that job's channel
            raw_id, _, data = data[len(REPLY_MAGIC) :].partition(b"\0")
            job_id = raw_id.decode("utf-8", "replace")
            if tenant_of(job_id) != self._layout.key_tenant(channel):
                return  # a reply channel only speaks for its own tenant's jobs
            channel = self._layout.job_channel(job_id)
            targets = self._local.get(channel, ())
            if not targets:
                return
        if isinstance(data, bytes) and data.startswith(PUSH_MAGIC):
            try:  # a job handed to this worker by a submit: its claim row
                row = msgpack.unpackb(data[len(PUSH_MAGIC) :], raw=True, strict_map_key=False)
            except ValueError:
                logger.error("dropped an unreadable job hand-over on %s (its claim will expire)", channel)
                return
            event: dict[str, Any] = {"e": "push", "row": row}
        elif isinstance(data, bytes) and data.startswith(RESULT_MAGIC):
            event = {"e": "done", "blob": data}  # a small result, sent with the notice
        else:
            try:
                parsed = json.loads(data)
            except ValueError:
                return
            if not isinstance(parsed, dict):
                return
            event = parsed
        for sub in list(targets):
            sub.put(event)

    def _broadcast(self, event: dict[str, Any]) -> None:
        if event.get("e") == "disconnected":
            self.epoch += 1
        held = set(self._replies.values())  # nobody reads these: their events go to local waiters
        for subs in [*self._subs.values(), *self._local.values()]:
            for sub in list(subs):
                if sub not in held:
                    sub.put(event)

    async def _read(self) -> None:
        backoff = 0.05
        while not self._closed:
            try:
                if not self._subs:
                    # nothing to listen to: park until someone subscribes (reader restarts then)
                    return
                message = await self._pubsub.get_message(timeout=1.0)
                now = time.monotonic()
                if message is not None:
                    self._last_heard = now
                    self._ping_sent = None
                    self._dispatch(message)
                elif self._ping_sent is not None and now - self._ping_sent > DEAD_AFTER:
                    raise ConnectionError("no answer from the server on the event connection")
                elif self._ping_sent is None and now - self._last_heard > PING_EVERY:
                    self._ping_sent = now
                    await self._pubsub.ping()
                backoff = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.closed:
                    return
                logger.debug("event connection failed (%s); reconnecting", type(exc).__name__)
                self._broadcast({"e": "disconnected"})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                await self._reconnect()

    async def _reconnect(self) -> None:
        async with self._lock:
            old = self._pubsub
            channels = list(self._subs)
            self._pubsub = None
            if old is not None:
                with contextlib.suppress(Exception):
                    await old.aclose()
            if self._redis is not None:
                with contextlib.suppress(Exception):
                    await self._redis.aclose()
            self._redis = make_redis(self._settings, for_pubsub=True)
            self._pubsub = self._redis.pubsub()
            try:
                if channels:
                    await self._pubsub.subscribe(*channels)
            except Exception:
                return  # the reader loop retries with backoff
            self._last_heard = time.monotonic()
            self._ping_sent = None
        self._broadcast({"e": "reconnected"})

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Stop the reader and close the subscriber connection (idempotent)."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        if self._reader is not None:
            await stop_tasks([self._reader], timeout=2.0)
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
        self._pubsub = None
        self._redis = None
