"""The server side of jobs that stream: a fenced append of items, and blocking reads of them.

A generator job's items go to a Redis stream per job, ``<tenant ns>:st:<job id>``, whose entries are
``k='b', a=<attempt>`` (an attempt begins: earlier attempts' entries are trimmed away), ``k='i',
v=<item bytes>`` (one item) and ``k='e', s=<state>`` (the job ended; written by the finish script,
see ``layout.STREAM_END``). A worker appends with its claim token, so a stale copy of the job (a
worker that lost its claim) cannot add items; readers block on the stream (``XREAD BLOCK``)::

    appender = StreamAppender(redis, lay, "acme:r1", lambda: token, ttl_ms=3_600_000)
    await appender.append([b"..."], begin=1)      # 'ok' | 'claim-lost'
    entries = await read_entries(store, "acme:r1", "0-0", block_ms=2000)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from .._names import tenant_of
from .keys import KeyLayout
from .layout import PRELUDE

__all__ = ["APPEND", "StreamAppender", "StreamEntry", "read_entries", "stream_key"]

#: ARGV: id, claim_token, begin_attempt ('' : none), ttl_ms, then the items' bytes.  Returns 'ok', or
#: 'claim-lost' when the token no longer holds the job (nothing is written). A begin entry trims every
#: entry before it: the stream holds the current attempt's items only (readers see the boundary).
APPEND = (
    PRELUDE
    + """
local id, tok = ARGV[1], ARGV[2]
if holds(id, tok, nil) == 0 then return 'claim-lost' end
local sk = TNS .. tenant_of(id) .. ':st:' .. id
if ARGV[3] ~= '' then
  local first = redis.call('XADD', sk, '*', 'k', 'b', 'a', ARGV[3])
  redis.call('XTRIM', sk, 'MINID', first)
  if redis.call('TYPE', meta_key(id))['ok'] == 'hash' then redis.call('HSET', meta_key(id), 'stream', ARGV[3]) end
end
for i = 5, #ARGV do redis.call('XADD', sk, '*', 'k', 'i', 'v', ARGV[i]) end
redis.call('PEXPIRE', sk, ARGV[4])
return 'ok'
"""
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
        await appender.append([codec.dumps(item)], begin=None)
    """

    def __init__(self, redis: Redis, lay: KeyLayout, job_id: str, token: Callable[[], str], *, ttl_ms: int) -> None:
        self._script = redis.register_script(lay.script(APPEND))
        self._keys = lay.script_keys()
        self.job_id = job_id
        self._token = token
        self._ttl_ms = max(int(ttl_ms), 1000)

    async def append(self, blobs: Sequence[bytes], *, begin: int | None) -> str:
        """Write ``blobs`` (and first, with ``begin``, the attempt's begin entry); 'ok' or 'claim-lost'."""
        args: list[Any] = [self.job_id, self._token(), "" if begin is None else begin, self._ttl_ms, *blobs]
        out = await self._script(keys=self._keys, args=args)
        return out.decode() if isinstance(out, bytes) else str(out)


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
    reply = await redis.xread({stream_key(lay, job_id): after}, count=count, block=block_ms)
    if not reply:
        return []
    # RESP2: [[key, [(id, {field: value}), ...]]]; RESP3: {key: [[(id, fields)...]]}
    rows = next(iter(reply.values()))[0] if isinstance(reply, dict) else reply[0][1]
    return [_entry(eid, fields) for eid, fields in rows]
