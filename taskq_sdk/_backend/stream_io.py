"""The server side of jobs that stream: a fenced append of items, and blocking reads of them.

A generator job's items go to a Redis stream per job, ``<tenant ns>:st:<job id>``, whose entries are
``k='b', a=<attempt>`` (an attempt begins: earlier attempts' entries are trimmed away), ``k='i',
v=<item bytes>`` (one item) and ``k='e', s=<state>`` (the job ended; written by the finish script,
see ``layout.STREAM_END``). A worker appends with its claim token, so a stale copy of the job (a
worker that lost its claim) cannot add items; readers block on the stream (``XREAD BLOCK``)::

    appender = StreamAppender(redis, lay, "acme:r1", lambda: token, ttl_ms=3_600_000)
    await appender.append([b"..."], attempt=1, seq=0)      # 'ok' | 'claim-lost'
    entries = await read_entries(store, "acme:r1", "0-0", block_ms=2000)

An append names the attempt and the index of its first item, so sending the same burst again (its
reply was lost to a reset connection) writes nothing twice. A key that is no stream (something else
wrote it) or a stream that lost this attempt's entries (deleted, trimmed) is reported as
:class:`StreamCorrupted`, never skipped over.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from .._names import tenant_of
from ..errors import TaskqError
from .keys import KeyLayout
from .layout import PRELUDE

__all__ = ["APPEND", "StreamAppender", "StreamCorrupted", "StreamEntry", "read_entries", "stream_key"]

#: ARGV: id, claim_token, attempt, ttl_ms, seq (the index of the burst's first item in the attempt),
#: then the items' bytes. Returns 'ok'; 'claim-lost' when the token no longer holds the job;
#: 'wrong-type:<type>' when the key holds no stream; 'gap:<n>' when the stream has only n of this
#: attempt's items but the burst starts later (entries were deleted or trimmed under the job). Nothing
#: is written in those cases. The attempt's first write adds its begin entry, which trims every entry
#: before it: the stream holds the current attempt's items only (readers see the boundary). Items the
#: stream already holds (a burst sent again after its reply was lost) are skipped.
APPEND = (
    PRELUDE
    + """
local id, tok, attempt, seq = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[5])
if holds(id, tok, nil) == 0 then return 'claim-lost' end
local sk = TNS .. tenant_of(id) .. ':st:' .. id
local ty = redis.call('TYPE', sk)['ok']
if ty ~= 'none' and ty ~= 'stream' then return 'wrong-type:' .. ty end
local head = ty == 'stream' and redis.call('XRANGE', sk, '-', '+', 'COUNT', 1)[1]
local f = head and head[2]
local have = 0
if f and f[1] == 'k' and f[2] == 'b' and f[4] == attempt then
  have = redis.call('XLEN', sk) - 1
elseif seq > 0 then
  return 'gap:0'
else
  local first = redis.call('XADD', sk, '*', 'k', 'b', 'a', attempt)
  redis.call('XTRIM', sk, 'MINID', first)
  if redis.call('TYPE', meta_key(id))['ok'] == 'hash' then redis.call('HSET', meta_key(id), 'stream', attempt) end
end
if have < seq then return 'gap:' .. have end
for i = 6 + have - seq, #ARGV do redis.call('XADD', sk, '*', 'k', 'i', 'v', ARGV[i]) end
redis.call('PEXPIRE', sk, ARGV[4])
return 'ok'
"""
)


class StreamCorrupted(TaskqError):
    """A job's stream key was changed by something else: it holds another type (``SET``/``HSET`` on it),
    or its items were deleted or trimmed while the job ran. The job fails with this (no retry: the key
    stays wrong), and a reader raises it; the message names the key and what to do.

    Example::

        try:
            items = list(job.stream())
        except StreamCorrupted as exc:
            print(exc.key)      # delete it (DEL <key>), then job.retry()
    """

    def __init__(self, job_id: str, key: str, what: str) -> None:
        self.job_id = job_id
        self.key = key
        super().__init__(
            f"job {job_id}'s stream key {key!r} {what}, so its items cannot be streamed. Delete the key "
            f"(DEL {key}) and run the job again with job.retry(); keep other data out of taskq's key prefix."
        )


def stream_key(lay: KeyLayout, job_id: str) -> str:
    """The stream holding job ``job_id``'s items, in layout ``lay``.

    Example::

        stream_key(layout, "acme:r1")   # 'taskq:t:acme:st:acme:r1'
    """
    return f"{lay.TENANT_NS}{tenant_of(job_id)}:st:{job_id}"


class StreamAppender:
    """Appends one job's items to its stream under the job's claim token (a worker's side).

    Example::

        appender = StreamAppender(redis, lay, job_id, lambda: token, ttl_ms=3_600_000)
        await appender.append([codec.dumps(item)], attempt=1, seq=0)
    """

    def __init__(self, redis: Redis, lay: KeyLayout, job_id: str, token: Callable[[], str], *, ttl_ms: int) -> None:
        self._script = redis.register_script(lay.script(APPEND))
        self._keys = lay.script_keys()
        self.job_id = job_id
        self.key = stream_key(lay, job_id)
        self._token = token
        self._ttl_ms = max(int(ttl_ms), 1000)

    async def append(self, blobs: Sequence[bytes], *, attempt: int, seq: int) -> str:
        """Write ``blobs``, items ``seq``.. of ``attempt`` (``seq`` 0 first writes the attempt's begin entry);
        'ok' or 'claim-lost'. Raises :class:`StreamCorrupted` when the key is not this attempt's stream."""
        args: list[Any] = [self.job_id, self._token(), attempt, self._ttl_ms, seq, *blobs]
        out = await self._script(keys=self._keys, args=args)
        reply = out.decode() if isinstance(out, bytes) else str(out)
        kind, _, detail = reply.partition(":")
        if kind == "wrong-type":
            raise StreamCorrupted(
                self.job_id, self.key, f"holds a {detail}, not a stream: another program (or a person) wrote it"
            )
        if kind == "gap":
            raise StreamCorrupted(
                self.job_id,
                self.key,
                f"lost items while the job ran (it holds {detail} of attempt {attempt}'s first {seq}): another "
                "program deleted or trimmed it, or it expired (no item for TASKQ_KEEP_RESULT + TASKQ_TOMBSTONE_TTL)",
            )
        return reply


@dataclass(frozen=True)
class StreamEntry:
    """One entry of a job's stream: ``kind`` 'b' (attempt begins), 'i' (item) or 'e' (ended)."""

    id: str
    kind: str
    attempt: int = 0
    value: bytes = b""
    state: str = ""


def _entry(entry_id: Any, fields: dict[Any, Any]) -> StreamEntry:
    def field(name: bytes) -> bytes:
        v = fields.get(name, b"")
        return v if isinstance(v, bytes) else str(v).encode()

    kind = field(b"k").decode()
    attempt = int(field(b"a") or 0) if kind == "b" else 0
    eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    return StreamEntry(eid, kind, attempt, field(b"v"), field(b"s").decode())


async def read_entries(
    redis: Redis, lay: KeyLayout, job_id: str, after: str, *, block_ms: int | None, count: int = 500
) -> list[StreamEntry]:
    """Entries of job ``job_id``'s stream after entry id ``after``, waiting up to ``block_ms`` for one
    (``None``: do not wait). An empty list: nothing new (or no stream).

    Example::

        entries = await read_entries(store.redis, store.layout, job.id, "0-0", block_ms=2000)
    """
    key = stream_key(lay, job_id)
    try:
        reply = await redis.xread({key: after}, count=count, block=block_ms)
    except ResponseError as exc:
        if not str(exc).startswith("WRONGTYPE"):
            raise
        kind = await redis.type(key)
        shown = kind.decode() if isinstance(kind, bytes) else kind
        raise StreamCorrupted(job_id, key, f"holds a {shown}, not a stream: another program wrote it") from None
    if not reply:
        return []
    # RESP2: [[key, [(id, {field: value}), ...]]]; RESP3: {key: [[(id, fields)...]]}
    rows = next(iter(reply.values()))[0] if isinstance(reply, dict) else reply[0][1]
    return [_entry(eid, fields) for eid, fields in rows]
